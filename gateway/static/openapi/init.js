// Starts Swagger UI on the gateway's own OpenAPI document (gateway/api_docs.py serves this file).
// Kept out of the page so that the page needs no inline script (its CSP allows only 'self').
(function () {
  "use strict";
  var script = document.currentScript;
  window.ui = SwaggerUIBundle({
    url: script.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // the default sends the schema to validator.swagger.io
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
