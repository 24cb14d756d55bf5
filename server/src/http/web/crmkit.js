// crmkit's board: drag a card to another column to move its deal — with a mouse from
// anywhere on the card, with a finger or a pen by its grip (the rest of the card scrolls
// the page). The move is the card's own form, sent in the background; a refusal comes back
// on the card, which returns to its column. Without this script the forms work as they are.
document.addEventListener('DOMContentLoaded', function () {
  var drag = null;

  document.querySelectorAll('article.card[data-movable]').forEach(function (card) {
    card.addEventListener('pointerdown', function (e) {
      if (e.button !== 0 || e.target.closest('a, select, button, input, textarea')) { return; }
      if (e.pointerType !== 'mouse' && !e.target.closest('.grip')) { return; }
      drag = { card: card, x: e.clientX, y: e.clientY, moved: false };
      e.preventDefault();
    });
  });

  document.addEventListener('pointermove', function (e) {
    if (!drag) { return; }
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 6) { return; }
    drag.moved = true;
    drag.card.classList.add('dragging');
    drag.card.style.transform = 'translate(' + dx + 'px,' + dy + 'px)';
    mark(columnAt(e.clientX, e.clientY));
  });

  document.addEventListener('pointerup', function (e) {
    if (!drag) { return; }
    var d = drag;
    var column = d.moved ? columnAt(e.clientX, e.clientY) : null;
    end();
    if (column && column !== d.card.closest('section.column')) { move(d.card, column); }
  });

  document.addEventListener('pointercancel', end);

  function end() {
    if (!drag) { return; }
    drag.card.classList.remove('dragging');
    drag.card.style.transform = '';
    drag = null;
    mark(null);
  }

  // The column under the pointer (the dragged card lets the pointer through).
  function columnAt(x, y) {
    var under = document.elementFromPoint(x, y);
    return under ? under.closest('section.column') : null;
  }

  function mark(column) {
    document.querySelectorAll('section.column.target').forEach(function (c) {
      if (c !== column) { c.classList.remove('target'); }
    });
    if (column) { column.classList.add('target'); }
  }

  function move(card, column) {
    var form = card.querySelector('form.move');
    var home = card.parentElement;
    var next = card.nextSibling;
    var body = new URLSearchParams(new FormData(form));
    body.set('stage', column.dataset.stage);
    column.insertBefore(card, column.querySelector('nav.pages'));
    card.classList.add('pending');
    card.querySelectorAll('.refusal').forEach(function (p) { p.remove(); });
    fetch(form.action, {
      method: 'POST',
      body: body,
      headers: { 'Accept': 'application/json' },
      credentials: 'same-origin'
    }).then(function (r) {
      return r.json().catch(function () { return { message: r.status + ' ' + r.statusText }; }).then(function (answer) {
        if (r.ok) { window.location.reload(); return; }
        refuse(answer);
      });
    }, function (error) {
      refuse({ message: String(error) });
    });

    function refuse(answer) {
      card.classList.remove('pending');
      home.insertBefore(card, next);
      var p = document.createElement('p');
      p.className = 'error refusal';
      p.setAttribute('role', 'alert');
      if (answer.field) { p.dataset.field = answer.field; }
      p.textContent = (answer.field ? answer.field + ': ' : '') + answer.message;
      card.insertBefore(p, form);
    }
  }
});
