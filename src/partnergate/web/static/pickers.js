/* Pickers: a field marked data-picker="users" or "partners" offers the names the store
   has (local users, OAuth clients' users, authorised users; partner IDs) as a datalist.
   Without this script the field is a plain text field. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var fields = document.querySelectorAll("input[data-picker]");
    var wanted = {};
    fields.forEach(function (field) { wanted[field.getAttribute("data-picker")] = true; });
    var base = document.querySelector("link[rel=stylesheet]").getAttribute("href").split("/static/")[0];
    Object.keys(wanted).forEach(function (what) {
      if (document.getElementById("picker-" + what)) { return; }
      fetch(base + "/pickers/" + what, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : []; })
        .then(function (names) {
          var list = document.createElement("datalist");
          list.id = "picker-" + what;
          names.forEach(function (name) {
            var option = document.createElement("option");
            option.value = name;
            list.appendChild(option);
          });
          document.body.appendChild(list);
        })
        .catch(function () { /* a plain text field still works */ });
    });
  });
})();
