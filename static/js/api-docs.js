// The API reference page: Swagger UI (vendored, static/vendor/swagger-ui-*), fed the OpenAPI document.
document.addEventListener("DOMContentLoaded", () => {
  const element = document.getElementById("api-reference");
  if (!element || typeof SwaggerUIBundle === "undefined") return;
  SwaggerUIBundle({
    url: element.dataset.schemaUrl,
    domNode: element,
    deepLinking: false,  // a link inside each operation's button is a nested control for screen readers
    defaultModelsExpandDepth: 0,
    tryItOutEnabled: false,
  });
});
