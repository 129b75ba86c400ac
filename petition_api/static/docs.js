// Swagger UI on the API's own OpenAPI document (a file of its own: the page allows no
// inline script).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#docs", deepLinking: true });
});
