/* The campaign form (templates/campaigns/campaign_form.html): the subject field follows the
 * channel: "Subject" for email, "Title" for push, hidden for SMS (which has none). The
 * labels come from the part's data-subject-labels ({"email": "Subject", "push": "Title"}).
 * A file, not inline script: the Content-Security-Policy allows scripts from this site only.
 */
(function () {
  "use strict";

  function follow() {
    const part = document.getElementById("subject-part");
    const channel = document.querySelector("#campaign-form [name=channel]");
    if (!part || !channel) return;
    const labels = JSON.parse(part.dataset.subjectLabels || "{}");
    const label = labels[channel.value];
    part.hidden = !label;
    const text = part.querySelector("label");
    if (label && text) {
      // Keep the required-field asterisk crispy-forms may have added after the text.
      text.firstChild.textContent = label;
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("#campaign-form [name=channel]")) follow();
  });
  document.addEventListener("DOMContentLoaded", follow);
})();
