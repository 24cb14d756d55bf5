// crmkit's board: drag a card to another column to move its deal. The move is the card's
// own form, sent in the background; a refusal comes back on the card, which returns to its
// column. Without this script the forms work as they are.
document.addEventListener('DOMContentLoaded', function () {
  var dragged = null;
  document.querySelectorAll('article.card[draggable=true]').forEach(function (card) {
    card.addEventListener('dragstart', function (e) {
      dragged = card;
      e.dataTransfer.setData('text/plain', card.dataset.deal);
      e.dataTransfer.effectAllowed = 'move';
    });
    card.addEventListener('dragend', function () { dragged = null; });
  });
  document.querySelectorAll('section.column').forEach(function (column) {
    column.addEventListener('dragover', function (e) {
      if (dragged) { e.preventDefault(); }
    });
    column.addEventListener('drop', function (e) {
      e.preventDefault();
      var card = dragged;
      dragged = null;
      if (!card || card.closest('section.column') === column) { return; }
      move(card, column);
    });
  });

  function move(card, column) {
    var form = card.querySelector('form.move');
    var home = card.parentElement;
    var next = card.nextSibling;
    var body = new URLSearchParams(new FormData(form));
    body.set('stage', column.dataset.stage);
    column.appendChild(card);
    card.querySelectorAll('.refusal').forEach(function (p) { p.remove(); });
    fetch(form.action, {
      method: 'POST',
      body: body,
      headers: { 'Accept': 'application/json' },
      credentials: 'same-origin'
    }).then(function (r) {
      return r.json().catch(function () { return { message: r.statusText }; }).then(function (answer) {
        if (r.ok) { window.location.reload(); return; }
        home.insertBefore(card, next);
        var p = document.createElement('p');
        p.className = 'error refusal';
        p.setAttribute('role', 'alert');
        if (answer.field) { p.dataset.field = answer.field; }
        p.textContent = (answer.field ? answer.field + ': ' : '') + answer.message;
        card.insertBefore(p, form);
      });
    });
  }
});
