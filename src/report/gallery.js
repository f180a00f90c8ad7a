(function () {
  'use strict';
  // The review gallery of one batch. Items arrive as JSON blocks in the page
  // (no network); cards are built with DOM calls and textContent only, so no
  // text from a manifest or a server is ever parsed as HTML. The view —
  // status filter, text filter, sort, page — lives in the URL hash
  // (#status=failed&q=cat&sort=duration&page=2), so a view can be bookmarked.
  var STATUSES = ['pending', 'submitting', 'submitted', 'processing', 'succeeded', 'downloaded', 'failed', 'timed_out', 'unknown'];
  // Sort by status: problems first, then by how far an item got.
  var STATUS_RANK = { failed: 0, unknown: 1, timed_out: 2, pending: 3, submitting: 4, submitted: 5, processing: 6, succeeded: 7, downloaded: 8 };
  var PAGE_SIZE = 48;
  var SORTS = ['manifest', 'id', 'status', 'duration'];

  var body = document.body;
  var $ = function (id) { return document.getElementById(id); };
  var cardsEl = $('cards'), countsEl = $('counts'), shownEl = $('shown'), pagerEl = $('pager');
  var qEl = $('q'), statusEl = $('status'), sortEl = $('sort');

  window.addEventListener('error', function (e) {
    var b = document.createElement('p');
    b.className = 'banner';
    b.setAttribute('role', 'alert');
    b.textContent = 'The gallery hit a script error: ' + (e && e.message ? e.message : 'unknown') + ' — report.csv has every item.';
    body.insertBefore(b, body.firstChild);
  });

  var items = [];
  var counts = {};
  STATUSES.forEach(function (s) { counts[s] = 0; });
  var unitsCharged = 0, unitsEst = 0;
  var view = { status: '', q: '', sort: 'manifest', page: 1 };
  var blocks = Array.prototype.slice.call(document.querySelectorAll('script.vb-data'));
  var loaded = false;

  // ---- the view in the URL hash -------------------------------------------
  function readHash() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ''));
    var st = p.get('status') || '';
    view.status = STATUSES.indexOf(st) >= 0 ? st : '';
    view.q = p.get('q') || '';
    var so = p.get('sort') || 'manifest';
    view.sort = SORTS.indexOf(so) >= 0 ? so : 'manifest';
    var pg = parseInt(p.get('page') || '1', 10);
    view.page = pg > 0 ? pg : 1;
    qEl.value = view.q;
    statusEl.value = view.status;
    sortEl.value = view.sort;
  }
  function writeHash() {
    var p = new URLSearchParams();
    if (view.status) p.set('status', view.status);
    if (view.q) p.set('q', view.q);
    if (view.sort !== 'manifest') p.set('sort', view.sort);
    if (view.page > 1) p.set('page', String(view.page));
    var h = p.toString();
    var url = location.href.replace(/#.*$/, '') + (h ? '#' + h : '');
    try { history.replaceState(null, '', url); } catch (e) { /* some file: setups refuse; the view still works */ }
  }

  // ---- loading: JSON blocks, a slice of time at a time ------------------------
  function add(it) {
    it.n = items.length;
    it.hay = [it.id, it.status, it.prompt || '', it.msg || '', it.code == null ? '' : String(it.code), settingsText(it)].join('\n').toLowerCase();
    items.push(it);
    if (counts[it.status] !== undefined) counts[it.status] += 1;
    var u = parseFloat(it.units);
    if (isFinite(u)) unitsCharged += u;
    if (typeof it.est === 'number') unitsEst += it.est;
  }
  // The first slice shows a page at once; later slices only count, and the
  // full view is computed once everything is in (filtering and sorting on
  // every slice would make loading 100,000 items quadratic).
  var slices = 0;
  function loadSome() {
    var t0 = Date.now();
    while (blocks.length && Date.now() - t0 < 30) {
      var el = blocks.shift();
      var arr = JSON.parse(el.textContent);
      el.textContent = '';
      for (var i = 0; i < arr.length; i++) add(arr[i]);
    }
    loaded = blocks.length === 0;
    slices += 1;
    if (loaded || slices === 1) update(false);
    else {
      renderCounts();
      shownEl.textContent = 'loading… ' + items.length.toLocaleString('en') + ' items so far';
    }
    if (!loaded) setTimeout(loadSome, 0);
    else body.setAttribute('data-loaded', String(items.length));
  }

  // ---- filtering, sorting, paging ---------------------------------------------
  function selected() {
    var q = view.q.trim().toLowerCase();
    var out = [];
    for (var i = 0; i < items.length; i++) {
      var it = items[i];
      if (view.status && it.status !== view.status) continue;
      if (q && it.hay.indexOf(q) < 0) continue;
      out.push(it);
    }
    var by = {
      manifest: function (a, b) { return a.n - b.n; },
      id: function (a, b) { return a.id < b.id ? -1 : a.id > b.id ? 1 : a.n - b.n; },
      status: function (a, b) { return (STATUS_RANK[a.status] - STATUS_RANK[b.status]) || a.n - b.n; },
      // Longest first; items without a video last.
      duration: function (a, b) {
        var x = a.dur == null ? -1 : a.dur, y = b.dur == null ? -1 : b.dur;
        return (y - x) || a.n - b.n;
      }
    }[view.sort];
    if (view.sort !== 'manifest') out.sort(by);
    return out;
  }

  var observer = 'IntersectionObserver' in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting) { observer.unobserve(e.target); startVideo(e.target); }
    });
  }, { rootMargin: '400px 0px' }) : null;

  function update(resetPage) {
    if (resetPage) view.page = 1;
    renderCounts();
    var list = selected();
    var pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    if (view.page > pages) view.page = loaded ? pages : view.page;
    var start = (view.page - 1) * PAGE_SIZE;
    renderCards(list.slice(start, start + PAGE_SIZE));
    shownEl.textContent = list.length.toLocaleString('en') + ' of ' + items.length.toLocaleString('en') + ' items' +
      (loaded ? '' : ' (loading…)');
    renderPager(pages);
    body.setAttribute('data-shown', String(list.length));
  }

  function renderCounts() {
    countsEl.textContent = '';
    countsEl.appendChild(chip('', 'all', items.length));
    STATUSES.forEach(function (s) { if (counts[s]) countsEl.appendChild(chip(s, s.replace('_', ' '), counts[s])); });
    var u = el('span', 'shown', 'units: ' + fmt(unitsCharged) + ' charged, ' + fmt(unitsEst) + ' estimated');
    countsEl.appendChild(u);
  }
  function chip(status, label, n) {
    var b = el('button', 'chip');
    b.type = 'button';
    b.setAttribute('data-status', status);
    b.setAttribute('aria-pressed', String(view.status === status));
    b.appendChild(document.createTextNode(label + ' '));
    b.appendChild(el('b', '', n.toLocaleString('en')));
    b.addEventListener('click', function () { view.status = status; statusEl.value = status; changed(); });
    return b;
  }
  function renderPager(pages) {
    pagerEl.textContent = '';
    if (pages <= 1) return;
    var prev = el('button', '', '‹ previous'), next = el('button', '', 'next ›');
    prev.type = next.type = 'button';
    prev.disabled = view.page <= 1;
    next.disabled = view.page >= pages;
    prev.addEventListener('click', function () { view.page -= 1; writeHash(); update(false); scrollTo(0, 0); });
    next.addEventListener('click', function () { view.page += 1; writeHash(); update(false); scrollTo(0, 0); });
    pagerEl.appendChild(prev);
    pagerEl.appendChild(el('span', 'shown', 'page ' + view.page + ' of ' + pages));
    pagerEl.appendChild(next);
  }

  // ---- one card -----------------------------------------------------------------
  var rendered = null;
  function renderCards(page) {
    // The same cards as shown already: keep them (and their loaded videos).
    var key = page.length ? page.map(function (it) { return it.n; }).join(',') : loaded ? 'none' : 'loading';
    if (key === rendered) return;
    rendered = key;
    if (observer) observer.disconnect();
    cardsEl.textContent = '';
    if (!page.length) {
      cardsEl.appendChild(el('p', 'empty', loaded ? 'No item matches.' : 'Loading…'));
      return;
    }
    var frag = document.createDocumentFragment();
    page.forEach(function (it) { frag.appendChild(card(it)); });
    cardsEl.appendChild(frag);
  }
  function card(it) {
    var c = el('article', 'card s-' + it.status);
    c.setAttribute('data-id', it.id);
    c.setAttribute('data-status', it.status);
    var vids = el('div', 'videos');
    if (it.videos && it.videos.length) {
      it.videos.forEach(function (v, i) {
        var f = el('figure');
        var video = document.createElement('video');
        video.controls = true;
        video.preload = 'none';
        video.muted = true;
        video.playsInline = true;
        video.setAttribute('data-src', v.src);
        video.setAttribute('data-state', 'waiting');
        f.appendChild(video);
        var cap = el('figcaption', '', it.videos.length > 1 ? '#' + (i + 1) : '');
        if (!cap.textContent) cap.hidden = true;
        f.appendChild(cap);
        vids.appendChild(f);
        if (observer) observer.observe(video); else startVideo(video);
      });
    } else {
      vids.appendChild(el('div', 'novideo', noVideoText(it)));
    }
    c.appendChild(vids);
    var b = el('div', 'body');
    var head = el('div', 'head');
    head.appendChild(el('span', 'id', it.id));
    head.appendChild(el('span', 'status', it.status.replace('_', ' ')));
    b.appendChild(head);
    if (it.prompt) b.appendChild(el('p', 'prompt', it.prompt));
    var st = settingsText(it);
    if (st) b.appendChild(el('p', 'settings', st));
    if (it.code != null || it.msg) {
      var e = el('p', 'error');
      if (it.code != null) e.appendChild(el('span', 'error-code', String(it.code)));
      if (it.msg) e.appendChild(el('span', 'error-message', it.msg));
      b.appendChild(e);
    }
    b.appendChild(el('p', 'facts', facts(it)));
    c.appendChild(b);
    return c;
  }
  function startVideo(video) {
    video.addEventListener('loadedmetadata', function () {
      video.setAttribute('data-state', 'ready');
      video.setAttribute('data-duration', video.duration.toFixed(2));
      var cap = video.parentNode.querySelector('figcaption');
      var label = (cap.textContent ? cap.textContent.split(' ')[0] + ' ' : '') + video.duration.toFixed(1) + ' s';
      cap.textContent = label;
      cap.hidden = false;
    });
    video.addEventListener('error', function () {
      video.setAttribute('data-state', 'error');
      var cap = video.parentNode.querySelector('figcaption');
      cap.textContent = 'cannot play: file missing or unreadable';
      cap.hidden = false;
    });
    video.preload = 'metadata';
    video.src = video.getAttribute('data-src');
  }
  function noVideoText(it) {
    switch (it.status) {
      case 'failed': return 'no video: failed';
      case 'timed_out': return 'no video yet: timed out (a rerun polls it again)';
      case 'unknown': return 'unknown: the create may have happened (and cost); not resent';
      case 'succeeded': return 'generated, not downloaded yet (a rerun downloads it)';
      case 'pending': return 'not submitted yet';
      default: return 'no video yet: ' + it.status;
    }
  }
  function settingsText(it) {
    var p = it.params || {};
    var parts = [it.kind];
    if (p.model_name) parts.push(p.model_name); else parts.push('default model');
    if (p.mode) parts.push(p.mode);
    if (p.duration) parts.push(p.duration + ' s');
    if (p.aspect_ratio) parts.push(p.aspect_ratio);
    if (p.cfg_scale != null) parts.push('cfg ' + p.cfg_scale);
    if (p.camera_control) parts.push('camera ' + (p.camera_control.type || ''));
    if (p.sound) parts.push('sound ' + p.sound);
    if (p.image) parts.push('image ' + basename(p.image));
    if (p.image_tail) parts.push('tail ' + basename(p.image_tail));
    var s = parts.join(' · ');
    if (p.negative_prompt) s += '\nnegative: ' + p.negative_prompt;
    return s;
  }
  function facts(it) {
    var f = [];
    if (it.dur != null) f.push('reported ' + fmt(it.dur) + ' s');
    if (it.units != null) f.push('units ' + it.units);
    if (typeof it.est === 'number') f.push('est. ' + fmt(it.est));
    f.push('attempts ' + it.attempts);
    if (it.task) f.push('task ' + it.task);
    if (it.submitted) f.push('submitted ' + when(it.submitted));
    if (it.finished) f.push('finished ' + when(it.finished));
    return f.join(' · ');
  }

  // ---- small helpers ----------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function fmt(n) { return (Math.round(n * 100) / 100).toLocaleString('en'); }
  function when(ms) { return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'); }
  function basename(p) { return String(p).split(/[\\/]/).pop(); }

  var typing = null;
  function changed() { view.page = 1; writeHash(); update(true); }
  qEl.addEventListener('input', function () {
    clearTimeout(typing);
    typing = setTimeout(function () { view.q = qEl.value; changed(); }, 150);
  });
  statusEl.addEventListener('change', function () { view.status = statusEl.value; changed(); });
  sortEl.addEventListener('change', function () { view.sort = sortEl.value; changed(); });
  window.addEventListener('hashchange', function () { readHash(); update(false); });

  readHash();
  loadSome();
})();
