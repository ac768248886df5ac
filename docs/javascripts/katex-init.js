// Typeset the math that pymdownx.arithmatex left in the page, with the KaTeX served from
// this site (docs/assets/katex). Material's `document$` fires on every page load, including
// its instant navigation, so each page is typeset once it is shown.
(function () {
  function typeset() {
    document.querySelectorAll(".arithmatex").forEach(function (element) {
      renderMathInElement(element, {
        delimiters: [
          { left: "\\(", right: "\\)", display: false },
          { left: "\\[", right: "\\]", display: true },
        ],
        throwOnError: false,
      });
    });
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(typeset);
  } else {
    document.addEventListener("DOMContentLoaded", typeset);
  }
})();
