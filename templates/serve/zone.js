// Offers the browser's timezone to the subscribe form (checked by the server; an unknown
// or missing one means the newsletter's own timezone).
document.querySelectorAll('input[name="timezone"]').forEach(function (field) {
  try {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    field.value = "";
  }
});
