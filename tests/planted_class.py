"""A small class with planted copies, for the class report's tests (tests/test_class_report.py).

Graded on stages 1-2 only. Three honest students solve the stubs their own way (each as the
contract asks, so their code shares the forced lines); two copy: ``erin`` hands in alice's
files with other comments, ``frank`` hands in bob's with every name changed and the layout
redone. ``stubs`` hands in the untouched stubs, ``crash`` the reference stage 1 that kills
its own process in ``forward``. Two named mistakes are planted in stage 2: bob's (and so
frank's) log-determinant has the wrong sign, carol's forgets the scaling term.

``COPIED`` are the pairs a similarity report must name, ``HONEST`` the ones it must not;
``MISTAKES`` maps a part of a check's "Likely mistake" to the students who make it.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, LESSONS = ROOT / "solutions", ROOT / "lessons"
STAGES = ("coupling", "model")
COPIED = {("alice", "erin"), ("bob", "frank")}
HONEST = {("alice", "bob"), ("alice", "carol"), ("bob", "carol"), ("carol", "erin"), ("carol", "frank")}
MISTAKES = {"wrong sign of the log-determinant": {"bob", "frank"}, "missing scaling term": {"carol"}}
SEGFAULT = "import ctypes\n        ctypes.string_at(0)\n"

COUPLING_ANSWERS = {
    "log_density_at_zero": "-0.3203",
    "coupling_parameters": "183",
    "jacobian_zero_entries": "21",
}
MODEL_ANSWERS = {"log_det_of_given_scales": "1.5", "nice_parameters": "738", "ml_log_scale": "2.3026"}

ALICE_COUPLING = {
    "partition": """
        first = np.arange(dim // 2)
        second = np.arange(dim // 2, dim)
        if parity == 0:
            return first, second
        return second, first
    """,
    "coupling_network": """
        model = tf.keras.Sequential()
        model.add(tf.keras.Input(shape=(in_dim,)))
        for _ in range(hidden_layers):
            model.add(tf.keras.layers.Dense(hidden_units, activation="relu"))
        model.add(tf.keras.layers.Dense(out_dim, kernel_initializer="zeros"))
        return model
    """,
    "AdditiveCoupling.split": """
        x = tf.convert_to_tensor(x)
        kept = tf.gather(x, indices=self.keep, axis=-1)
        changed = tf.gather(x, indices=self.change, axis=-1)
        return kept, changed
    """,
    "AdditiveCoupling.merge": """
        inverse = np.empty(self.dim, dtype=np.int64)
        inverse[np.concatenate([self.keep, self.change])] = np.arange(self.dim)
        both = tf.concat([keep, change], axis=-1)
        return tf.gather(both, inverse, axis=-1)
    """,
    "AdditiveCoupling.forward": """
        kept, changed = self.split(x)
        shift = self.m(kept)
        return self.merge(kept, changed + shift)
    """,
    "AdditiveCoupling.backward": """
        kept, changed = self.split(y)
        shift = self.m(kept)
        return self.merge(kept, changed - shift)
    """,
}
ALICE_MODEL = {
    "NICE.__init__": """
        layers = []
        for index in range(num_couplings):
            layers.append(AdditiveCoupling(dim, index % 2, hidden_units=hidden_units,
                                           hidden_layers=hidden_layers))
        self.couplings = layers
        self.log_scale = self.add_weight(shape=(dim,), initializer="zeros", trainable=True,
                                         name="log_scale")
    """,
    "NICE.forward": """
        for layer in self.couplings:
            h = layer.forward(h)
        scale = tf.exp(self.log_scale)
        return h * scale
    """,
    "NICE.backward": """
        scale = tf.exp(self.log_scale)
        x = x / scale
        for layer in self.couplings[::-1]:
            x = layer.backward(x)
        return x
    """,
    "NICE.log_det_jacobian": """
        total = tf.reduce_sum(self.log_scale)
        return total
    """,
}

BOB_COUPLING = {
    "partition": """
        index = np.arange(dim)
        keep = index[index % 2 == parity]
        change = index[index % 2 != parity]
        return keep, change
    """,
    "coupling_network": """
        net = [tf.keras.layers.Dense(hidden_units, activation=tf.nn.relu) for i in range(hidden_layers)]
        net.append(tf.keras.layers.Dense(out_dim, kernel_initializer=tf.keras.initializers.Zeros(),
                                         bias_initializer="zeros"))
        return tf.keras.Sequential(net)
    """,
    "AdditiveCoupling.split": """
        columns = tf.transpose(tf.convert_to_tensor(x))
        first = tf.transpose(tf.gather(columns, self.keep))
        second = tf.transpose(tf.gather(columns, self.change))
        return first, second
    """,
    "AdditiveCoupling.merge": """
        columns = [None] * self.dim
        for j, where in enumerate(self.keep):
            columns[where] = keep[:, j]
        for j, where in enumerate(self.change):
            columns[where] = change[:, j]
        return tf.stack(columns, axis=1)
    """,
    "AdditiveCoupling.forward": """
        a, b = self.split(x)
        b = b + self.m(a)
        return self.merge(a, b)
    """,
    "AdditiveCoupling.backward": """
        a, b = self.split(y)
        b = b - self.m(a)
        return self.merge(a, b)
    """,
}
BOB_MODEL = {
    "NICE.__init__": """
        self.couplings = [AdditiveCoupling(dim=dim, parity=k % 2, hidden_units=hidden_units,
                                           hidden_layers=hidden_layers) for k in range(num_couplings)]
        self.log_scale = self.add_weight(shape=[dim], initializer="zeros", name="log_scale")
    """,
    "NICE.forward": """
        out = h
        for c in self.couplings:
            out = c(out)
        return out * tf.math.exp(self.log_scale)
    """,
    "NICE.backward": """
        out = x * tf.math.exp(-self.log_scale)
        for c in reversed(self.couplings):
            out = c.backward(out)
        return out
    """,
    "NICE.log_det_jacobian": """
        return -tf.math.reduce_sum(self.log_scale)
    """,
}

CAROL_COUPLING = {
    "partition": """
        half = (dim + 1) // 2
        low, high = list(range(half)), list(range(half, dim))
        keep, change = (low, high) if parity else (high, low)
        return np.array(keep, dtype=int), np.array(change, dtype=int)
    """,
    "coupling_network": """
        inputs = tf.keras.Input(shape=(in_dim,))
        hidden = inputs
        for _ in range(hidden_layers):
            hidden = tf.keras.layers.Dense(hidden_units)(hidden)
            hidden = tf.keras.layers.ReLU()(hidden)
        outputs = tf.keras.layers.Dense(out_dim, kernel_initializer="zeros")(hidden)
        return tf.keras.Model(inputs, outputs)
    """,
    "AdditiveCoupling.split": """
        parts = [tf.gather(x, idx, axis=1) for idx in (self.keep, self.change)]
        return parts[0], parts[1]
    """,
    "AdditiveCoupling.merge": """
        positions = np.argsort(np.hstack((self.keep, self.change)))
        joined = tf.concat((keep, change), 1)
        return tf.gather(joined, positions, axis=1)
    """,
    "AdditiveCoupling.forward": """
        x1, x2 = self.split(x)
        y2 = x2 + self.m(x1)
        return self.merge(x1, y2)
    """,
    "AdditiveCoupling.backward": """
        y1, y2 = self.split(y)
        x2 = y2 - self.m(y1)
        return self.merge(y1, x2)
    """,
}
CAROL_MODEL = {
    "NICE.__init__": """
        self.couplings = []
        parity = 0
        while len(self.couplings) < num_couplings:
            self.couplings.append(AdditiveCoupling(dim, parity, hidden_units, hidden_layers))
            parity = 1 - parity
        self.log_scale = self.add_weight(name="log_scale", shape=(dim,), initializer=tf.zeros_initializer())
    """,
    "NICE.forward": """
        z = h
        for i in range(len(self.couplings)):
            z = self.couplings[i].forward(z)
        return z * tf.exp(self.log_scale)
    """,
    "NICE.backward": """
        z = x * tf.exp(-1.0 * self.log_scale)
        for i in range(len(self.couplings) - 1, -1, -1):
            z = self.couplings[i].backward(z)
        return z
    """,
    "NICE.log_det_jacobian": """
        return tf.constant(0.0)
    """,
}

#: frank's renaming of bob's names (whole words).
RENAMES = {
    "index": "idx",
    "keep": "kept_cols",
    "change": "moved_cols",
    "net": "stack",
    "columns": "cols",
    "first": "left",
    "second": "right",
    "where": "pos",
    "a": "u",
    "b": "v",
    "out": "z",
    "c": "layer",
    "k": "n",
}


def fill(stub: str, stage: str, code: dict[str, str], answers: dict[str, str]) -> str:
    """``stub`` with each ``# TODO (stage): NAME`` block (its comment lines and the
    ``raise NotImplementedError(...)``) replaced by ``code[NAME]`` at the block's indentation,
    and the ``ANSWERS`` left as None filled in."""
    for name, body in code.items():
        pattern = re.compile(
            rf"( *)# TODO \({stage}\): {re.escape(name)}\n(?:.*\n)*?\1raise NotImplementedError\("
            rf"\n.*\n\1\)\n"
        )
        match = pattern.search(stub)
        assert match, f"no TODO block {name} in the {stage} stub"
        indent = match.group(1)
        block = textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", indent)
        stub = stub[: match.start()] + block + stub[match.end() :]
    for key, value in answers.items():
        stub = stub.replace(f'"{key}": None', f'"{key}": {value}')
    return stub


def _write(sub: Path, coupling: str, model: str) -> None:
    sub.mkdir(parents=True)
    shutil.copyfile(LESSONS / "__init__.py", sub / "__init__.py")
    (sub / "coupling.py").write_text(coupling)
    (sub / "model.py").write_text(model)


def _renamed(source: str) -> str:
    """bob's module as frank hands it in: names changed (in the docstrings too), comments
    reworded, the layout of the code's lines changed (more spaces, a blank line before returns)."""
    for old, new in RENAMES.items():
        source = re.sub(rf"(?<![\w.\"']){old}(?![\w\"'=])", new, source)
    source = source.replace("# ", "# (my notes) ")
    return source.replace(" = ", "  =  ").replace("\n        return ", "\n\n        return ")


def make_class(root: Path) -> dict[str, Path]:
    """Write the class into ``root`` (one folder per student); return the folders by name."""
    coupling_stub, model_stub = (LESSONS / "coupling.py").read_text(), (LESSONS / "model.py").read_text()
    modules = {
        "alice": (
            fill(coupling_stub, "coupling", ALICE_COUPLING, COUPLING_ANSWERS),
            fill(model_stub, "model", ALICE_MODEL, MODEL_ANSWERS),
        ),
        "bob": (
            fill(coupling_stub, "coupling", BOB_COUPLING, COUPLING_ANSWERS),
            fill(model_stub, "model", BOB_MODEL, MODEL_ANSWERS),
        ),
        "carol": (
            fill(coupling_stub, "coupling", CAROL_COUPLING, COUPLING_ANSWERS),
            fill(model_stub, "model", CAROL_MODEL, MODEL_ANSWERS),
        ),
    }
    alice_coupling, alice_model = modules["alice"]
    modules["erin"] = (alice_coupling.replace("# ", "# erin: "), alice_model.replace("# ", "# erin: "))
    modules["frank"] = tuple(_renamed(text) for text in modules["bob"])
    crash = (SOLUTIONS / "coupling.py").read_text()
    anchor = "        x = as_batch(x, self.dim)\n"
    assert crash.count(anchor) == 1
    modules["crash"] = (crash.replace(anchor, anchor + "        " + SEGFAULT), model_stub)
    modules["stubs"] = (coupling_stub, model_stub)
    folders = {}
    for name, (coupling, model) in modules.items():
        _write(root / name, coupling, model)
        folders[name] = root / name
    return folders
