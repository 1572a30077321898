// The yinzi web console: plain ES modules, no build step. Every action goes through the public API or the
// console's small JSON answers; the API key stays in sessionStorage (this tab's session only).
import { ORDER_TYPES, lang, setLang, statusName, t, typeName } from './i18n.js';
import { drawWave, peaksOf } from './wave.js';

const CHUNK_BYTES = 4 * 1024 * 1024; // one PUT of a resumable upload
const POLL_MS = 1000;
const SPEAKER_COLOURS = ['#3a5bd9', '#d9703a', '#1f9d55', '#a23ad9', '#d93a7a', '#3aa5d9'];
const view = document.getElementById('view');
const session = {
  get key() { return sessionStorage.getItem('yinzi.key'); },
  set key(v) { v ? sessionStorage.setItem('yinzi.key', v) : sessionStorage.removeItem('yinzi.key'); },
  get op() { return sessionStorage.getItem('yinzi.op'); },
  set op(v) { v ? sessionStorage.setItem('yinzi.op', v) : sessionStorage.removeItem('yinzi.op'); },
};
let timers = [];

// ---- small helpers ----------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c.nodeType ? c : String(c));
  return el;
}
const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString(lang() === 'zh' ? 'zh-CN' : 'en-GB') : '');
const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

function toast(msg, error = false) {
  const el = document.getElementById('toast');
  el.textContent = msg;
  el.className = error ? 'error' : '';
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

async function api(path, { method = 'GET', body, as = 'key' } = {}) {
  const headers = { Authorization: `Bearer ${as === 'op' ? session.op : session.key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await resp.json().catch(() => ({ msg: `HTTP ${resp.status}` }));
  if (!resp.ok || answer.code !== 0) {
    const err = new Error(answer.msg || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return answer.data;
}

function every(ms, fn) {
  const id = setInterval(fn, ms);
  timers.push(id);
  return id;
}

function statusBadge(status) {
  return h('span', { class: `status ${status}`, 'data-status': status }, statusName(status));
}

function bar(progress) {
  return h('div', { class: 'bar', title: `${progress}%` }, h('div', { style: `width:${progress}%` }));
}

// ---- routing ----------------------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/login$/, viewLogin],
  [/^#\/orders$/, viewOrders],
  [/^#\/order\/(\w+)$/, viewOrder],
  [/^#\/new$/, viewNew],
  [/^#\/analyze$/, viewAnalyze],
  [/^#\/account$/, viewAccount],
  [/^#\/admin$/, viewAdmin],
];

function nav() {
  const links = [];
  if (session.key) {
    links.push(['#/orders', t('orders')], ['#/new', t('newOrder')], ['#/analyze', t('analyze')], ['#/account', t('account')]);
  }
  if (session.op) links.push(['#/admin', t('operator')]);
  links.push(['/docs', t('docs')]);
  const here = location.hash.split('/').slice(0, 2).join('/');
  const el = document.getElementById('nav');
  el.replaceChildren(
    ...links.map(([href, text]) => h('a', { href, class: href === here ? 'active' : null }, text)),
    session.key || session.op
      ? h('a', { href: '#/login', id: 'sign-out', onclick: () => { session.key = null; session.op = null; } }, t('signOut'))
      : h('a', { href: '#/login', class: here === '#/login' ? 'active' : null }, t('signIn')),
  );
}

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  const hash = location.hash || (session.key ? '#/orders' : session.op ? '#/admin' : '#/login');
  const needsKey = !/^#\/(login|admin)/.test(hash);
  if ((needsKey && !session.key) || (hash === '#/admin' && !session.op)) {
    if (location.hash !== '#/login') { location.hash = '#/login'; return; }
  }
  nav();
  for (const [pattern, render] of ROUTES) {
    const m = hash.match(pattern);
    if (m) {
      view.replaceChildren();
      try {
        await render(...m.slice(1));
      } catch (err) {
        if (err.status === 401) { session.key = null; location.hash = '#/login'; }
        toast(err.message, true);
      }
      return;
    }
  }
  location.hash = session.key ? '#/orders' : '#/login';
}

// ---- sign in ----------------------------------------------------------------------------------------------

function viewLogin() {
  const key = h('input', { type: 'password', id: 'key-input', autocomplete: 'off', placeholder: 'yz_…' });
  const token = h('input', { type: 'password', id: 'op-input', autocomplete: 'off', placeholder: 'yzop_…' });
  const signIn = async (ev) => {
    ev.preventDefault();
    session.key = key.value.trim();
    try {
      await api('/console/api/me');
      location.hash = '#/orders';
    } catch (err) { session.key = null; toast(err.message, true); }
  };
  const opSignIn = async (ev) => {
    ev.preventDefault();
    session.op = token.value.trim();
    try {
      await api('/console/api/admin/whoami', { as: 'op' });
      location.hash = '#/admin';
    } catch (err) { session.op = null; toast(err.message, true); }
  };
  view.append(
    h('div', { class: 'grid2' },
      h('form', { class: 'card', onsubmit: signIn },
        h('h2', {}, t('signIn')), h('label', { for: 'key-input' }, t('apiKey')), key, ' ',
        h('button', { id: 'sign-in', type: 'submit' }, t('signIn')), h('p', { class: 'hint' }, t('signInHint'))),
      h('form', { class: 'card', onsubmit: opSignIn },
        h('h2', {}, t('operatorSignIn')), h('label', { for: 'op-input' }, t('operatorToken')), token, ' ',
        h('button', { id: 'op-sign-in', type: 'submit' }, t('signIn')), h('p', { class: 'hint' }, t('operatorHint')))),
  );
}

// ---- orders -----------------------------------------------------------------------------------------------

async function viewOrders() {
  const body = h('tbody');
  const table = h('table', { id: 'orders' },
    h('thead', {}, h('tr', {}, ...['orderNo', 'type', 'status', 'progress', 'created'].map((k) => h('th', {}, t(k))))), body);
  const card = h('div', { class: 'card' }, h('h2', {}, t('orders')), table);
  view.append(card);
  const refresh = async () => {
    const orders = await api('/console/api/orders');
    body.replaceChildren(...orders.map((o) => h('tr', {
      class: 'link', 'data-order': o.orderNo, 'data-status': o.status,
      onclick: () => { location.hash = `#/order/${o.orderNo}`; },
    },
    h('td', { class: 'mono' }, o.orderNo), h('td', {}, typeName(o.orderType)), h('td', {}, statusBadge(o.status)),
    h('td', {}, bar(o.progress)), h('td', { class: 'muted' }, when(o.createdAt)))));
    if (!orders.length) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, t('noOrders'))));
  };
  await refresh();
  every(POLL_MS * 1.5, () => refresh().catch(() => {}));
}

async function viewOrder(orderNo) {
  const head = h('div', { class: 'card', id: 'order-head' });
  const results = h('div', { id: 'results' });
  view.append(head, results);
  let shown = false;
  const refresh = async () => {
    const o = await api(`/console/api/orders/${orderNo}`);
    head.replaceChildren(...[
      h('h2', {}, `${typeName(o.orderType)} · `, h('span', { class: 'mono' }, o.orderNo)),
      h('div', { class: 'row' }, statusBadge(o.status), h('div', { style: 'flex:1' }, bar(o.progress)), h('span', { id: 'progress' }, `${o.progress}%`)),
      h('p', { class: 'hint' }, `${t('source')}: `, o.source || ''),
      o.reason ? h('p', { class: 'bad', id: 'reason' }, `${t('reason')}: ${o.reason}`) : null,
    ].filter(Boolean));
    if (o.status === 'finish' && !shown) {
      shown = true;
      await showResults(o, results);
    }
    return o;
  };
  const first = await refresh();
  if (first.status === 'pending' || first.status === 'processing') {
    results.append(h('p', { class: 'muted' }, t('waiting')));
    const id = every(POLL_MS, async () => {
      const o = await refresh().catch(() => null);
      if (o && !['pending', 'processing'].includes(o.status)) {
        clearInterval(id);
        if (o.status !== 'finish') results.replaceChildren();
      }
    });
  }
}

async function showResults(order, box) {
  // order/query is the API's own answer: it charges on the first look after finishing and lists the files.
  const q = await api(`/api/open/v1/order/query?orderNo=${encodeURIComponent(order.orderNo)}`);
  box.replaceChildren();
  const players = h('div', { class: 'card' }, h('h2', {}, t('results')), h('p', { class: 'hint' }, t('seekHint')));
  let anyPlayer = false;
  for (const s of q.stuffs) {
    if (/\.(mp3|wav|flac)$/i.test(s.name)) { players.append(player(s)); anyPlayer = true; }
  }
  if (anyPlayer) box.append(players);
  const json = q.stuffs.find((s) => s.business === 'json' || s.name === 'transcript.json');
  if (json) box.append(await transcriptView(order, json));
  box.append(h('div', { class: 'card', id: 'downloads' }, h('h2', {}, t('downloads')),
    h('p', {}, `${t('cost')}: ${q.cost} ${t('points')} · ${t('balance')}: ${q.balance}`),
    h('ul', {}, ...q.stuffs.map((s) => h('li', {}, h('a', { href: s.url, download: s.name }, s.name), ' ', h('span', { class: 'pill' }, s.business))))));
}

function player(stuff) {
  const audio = h('audio', { controls: true, preload: 'auto', src: stuff.url, 'data-business': stuff.business, id: `player-${stuff.business}` });
  const canvas = h('canvas', { class: 'wave', 'data-business': stuff.business, width: 1000, height: 72 });
  let peaks = null;
  const redraw = () => drawWave(canvas, peaks, audio.duration ? audio.currentTime / audio.duration : 0);
  canvas.addEventListener('click', (ev) => {
    if (!audio.duration) return;
    const rect = canvas.getBoundingClientRect();
    audio.currentTime = ((ev.clientX - rect.left) / rect.width) * audio.duration;
    redraw();
  });
  audio.addEventListener('timeupdate', redraw);
  fetch(stuff.url).then((r) => r.arrayBuffer()).then((buf) => peaksOf(buf, canvas.width)).then((p) => {
    peaks = p;
    canvas.dataset.ready = '1';
    redraw();
  }).catch(() => { canvas.dataset.ready = 'error'; });
  return h('div', { class: 'player' }, h('div', {}, h('strong', {}, stuff.business), ' ', h('span', { class: 'muted' }, stuff.name)), canvas, audio);
}

async function transcriptView(order, json) {
  const data = await (await fetch(json.url)).json();
  const isVideo = /\.(mp4|mov|webm|mkv)(\?|$)/i.test(order.sourceUrl || '');
  const media = order.sourceUrl
    ? h(isVideo ? 'video' : 'audio', { controls: true, preload: 'auto', src: order.sourceUrl, id: 'source-player' })
    : h('p', { class: 'muted' }, '—');
  const speakers = [];
  const lines = h('ul', { class: 'lines', id: 'transcript' }, ...(data.segments || []).map((seg, i) => {
    let spk = null;
    if (seg.speaker !== undefined && seg.speaker !== null) {
      if (!speakers.includes(seg.speaker)) speakers.push(seg.speaker);
      const colour = SPEAKER_COLOURS[speakers.indexOf(seg.speaker) % SPEAKER_COLOURS.length];
      spk = h('span', { class: 'spk', style: `background:${colour}` }, String(seg.speaker));
    }
    return h('li', {
      'data-start': seg.start, 'data-end': seg.end, 'data-index': i,
      onclick: () => { if (media.play) { media.currentTime = seg.start; media.play().catch(() => {}); } },
    }, h('span', { class: 't' }, clock(seg.start)), spk, h('span', {}, seg.text.trim()));
  }));
  if (media.addEventListener) {
    media.addEventListener('timeupdate', () => {
      for (const li of lines.children) {
        const on = media.currentTime >= Number(li.dataset.start) && media.currentTime < Number(li.dataset.end);
        if (on && !li.classList.contains('current')) li.scrollIntoView({ block: 'nearest' });
        li.classList.toggle('current', on);
      }
    });
  }
  return h('div', { class: 'card' }, h('h2', {}, t('transcript'), data.language ? h('span', { class: 'pill' }, data.language) : null),
    h('div', { class: 'transcript' }, h('div', {}, media), lines));
}

// ---- new order --------------------------------------------------------------------------------------------

function viewNew() {
  const type = h('select', { id: 'order-type' }, ...ORDER_TYPES.map((v) => h('option', { value: v }, typeName(v))));
  const priority = h('select', { id: 'priority' }, h('option', { value: 'queue' }, 'queue'), h('option', { value: 'lightning' }, 'lightning'));
  const pathKey = h('textarea', { id: 'path-key', placeholder: 'https://…' });
  const file = h('input', { type: 'file', id: 'file', accept: 'audio/*,video/*' });
  const progress = h('progress', { id: 'upload-progress', max: 100, value: 0, hidden: true });
  const note = h('p', { class: 'hint', id: 'upload-note' });
  const resume = h('button', { type: 'button', id: 'resume', class: 'secondary', hidden: true }, t('resume'));
  const create = h('button', { type: 'submit', id: 'create' }, t('create'));

  const order = async (stuff) => {
    const made = await api('/api/open/v1/order/create', { method: 'POST', body: { orderType: type.value, priority: priority.value, stuff } });
    location.hash = `#/order/${made.orderNo}`;
  };
  const sendFile = async () => {
    const f = file.files[0];
    create.disabled = true;
    resume.hidden = true;
    progress.hidden = false;
    try {
      const uploadId = await upload(f, (done) => {
        progress.value = Math.floor((done / f.size) * 100);
        note.textContent = `${t('uploading')} ${progress.value}%`;
      });
      await order({ uploadId });
    } catch (err) {
      if (err.resumable) {
        note.textContent = t('uploadCut');
        resume.hidden = false;
      } else toast(err.message, true);
    } finally { create.disabled = false; }
  };
  resume.addEventListener('click', sendFile);
  const submit = async (ev) => {
    ev.preventDefault();
    try {
      if (file.files.length) await sendFile();
      else await order({ pathKey: pathKey.value.trim() });
    } catch (err) { toast(err.message, true); }
  };
  view.append(h('form', { class: 'card', onsubmit: submit },
    h('h2', {}, t('newOrder')),
    h('div', { class: 'row' }, h('div', {}, h('label', { for: 'order-type' }, t('type')), type), h('div', {}, h('label', { for: 'priority' }, t('priority')), priority)),
    h('label', { for: 'path-key' }, t('fromUrl')), pathKey, h('p', { class: 'hint' }, t('pathKeyHint')),
    h('label', { for: 'file' }, t('fromFile')), file, progress, note,
    h('div', { class: 'row' }, create, resume)));
}

// A file through the resumable upload API: one session per file (kept in sessionStorage, so picking the same
// file again resumes), PUTs of CHUNK_BYTES with Content-Range, and after a broken connection the server's
// `received` says where to go on.
async function upload(f, onProgress) {
  const memo = `yinzi.upload.${f.name}:${f.size}:${f.lastModified}`;
  let up = JSON.parse(sessionStorage.getItem(memo) || 'null');
  if (up) {
    try { up = await api(`/api/open/v1/uploads/${up.uploadId}`); } catch { up = null; }
  }
  if (!up) {
    up = await api('/api/open/v1/uploads', { method: 'POST', body: { fileName: f.name, mimeType: f.type || 'application/octet-stream', sizeBytes: f.size } });
    sessionStorage.setItem(memo, JSON.stringify({ uploadId: up.uploadId }));
  }
  let offset = up.received || 0;
  const url = up.uploadUrl;
  while (up.state !== 'complete' && offset < f.size) {
    const end = Math.min(offset + CHUNK_BYTES, f.size);
    try {
      await putRange(url, f.slice(offset, end), offset, end - 1, f.size, (n) => onProgress(offset + n));
      offset = end;
    } catch (err) {
      const state = await api(`/api/open/v1/uploads/${up.uploadId}`).catch(() => null);
      if (state && state.received !== undefined) offset = state.received;
      onProgress(offset);
      err.resumable = true;
      throw err;
    }
    onProgress(offset);
  }
  await api(`/api/open/v1/uploads/${up.uploadId}/complete`, { method: 'POST', body: {} });
  sessionStorage.removeItem(memo);
  return up.uploadId;
}

function putRange(url, blob, first, last, size, onSent) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('Content-Range', `bytes ${first}-${last}/${size}`);
    xhr.upload.onprogress = (ev) => onSent(ev.loaded);
    xhr.onload = () => (xhr.status < 300 ? resolve() : reject(new Error(`upload: HTTP ${xhr.status} ${xhr.responseText}`)));
    xhr.onerror = () => reject(new Error('upload: connection lost'));
    xhr.send(blob);
  });
}

// ---- short video ------------------------------------------------------------------------------------------

function viewAnalyze() {
  const text = h('textarea', { id: 'share-text', placeholder: '7.43 复制打开抖音，看看… https://v.douyin.com/…' });
  const out = h('div', { id: 'analysis' });
  const go = async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    try {
      const a = await api('/api/open/v1/short-video/analyze', { method: 'POST', body: { link: text.value } });
      const links = [[t('video'), a.videoUrl], [t('music'), a.musicUrl], ...(a.images || []).map((u, i) => [`${t('images')} ${i + 1}`, u])];
      out.append(h('div', { class: 'card' },
        h('div', { class: 'row', style: 'align-items:flex-start' },
          a.cover ? h('img', { class: 'cover', src: a.cover, alt: '' }) : null,
          h('div', { style: 'flex:1' },
            h('h2', { id: 'analyze-title' }, a.title || ''),
            h('p', {}, `${t('author')}: `, h('span', { id: 'analyze-author' }, a.author || '')),
            h('p', {}, h('span', { class: 'pill' }, a.platform), ` ${t('balance')}: ${a.balance}`),
            a.videoUrl ? h('video', { controls: true, src: a.videoUrl, preload: 'none', referrerpolicy: 'no-referrer', width: 360 }) : null,
            h('ul', {}, ...links.filter(([, u]) => u).map(([label, u]) => h('li', {}, h('a', { href: u, target: '_blank', rel: 'noreferrer' }, label))))))));
    } catch (err) { toast(err.message, true); }
  };
  view.append(h('form', { class: 'card', onsubmit: go }, h('h2', {}, t('analyze')), h('label', { for: 'share-text' }, t('shareText')), text,
    h('p', {}, h('button', { id: 'analyze', type: 'submit' }, t('analyzeBtn')))), out);
}

// ---- account ----------------------------------------------------------------------------------------------

async function viewAccount() {
  const me = await api('/console/api/me');
  const secret = h('code', { class: 'secret', id: 'webhook-secret' }, '••••••••');
  const newKey = h('p', { id: 'new-key' });
  view.append(
    h('div', { class: 'card' }, h('h2', {}, `${t('signedInAs')} ${me.name}`),
      h('p', {}, `${t('balance')}: `, h('strong', { id: 'balance' }, String(me.balance)), ` ${t('points')}`)),
    h('div', { class: 'card' }, h('h2', {}, t('keys')),
      table(['prefix', 'label', 'state', 'rateLimit', 'created', ''], me.keys.map((k) => [
        h('code', {}, k.prefix), k.label, k.revokedAt ? t('revoked') : t('active'), k.rateLimit ?? t('defaultLimit'), when(k.createdAt),
        k.revokedAt ? '' : h('button', { class: 'danger', onclick: async () => { await api(`/console/api/me/keys/${k.prefix}/revoke`, { method: 'POST' }); route(); } }, t('revoke')),
      ])),
      h('p', {}, h('button', { id: 'new-key-btn', class: 'secondary', onclick: async () => {
        const made = await api('/console/api/me/keys', { method: 'POST', body: { label: 'console' } });
        newKey.replaceChildren(t('keyShownOnce'), ' ', h('code', {}, made.key));
      } }, t('newKey'))), newKey),
    h('div', { class: 'card' }, h('h2', {}, t('webhookSecret')), h('p', {}, secret),
      h('button', { class: 'secondary', onclick: () => { secret.textContent = me.webhookSecret; } }, t('show')), ' ',
      h('button', { class: 'danger', onclick: async () => { me.webhookSecret = (await api('/console/api/me/webhook-secret', { method: 'POST' })).webhookSecret; secret.textContent = me.webhookSecret; } }, t('rotate'))),
    h('div', { class: 'card' }, h('h2', {}, t('ledger')),
      table(['when', 'change', 'after', 'kind', 'note'], me.ledger.map((r) => [when(r.created_at), r.delta > 0 ? `+${r.delta}` : r.delta, r.balance_after, r.kind, r.note || r.ref || '']), 'ledger')),
  );
}

function table(headers, rows, id) {
  return h('table', { id }, h('thead', {}, h('tr', {}, ...headers.map((k) => h('th', {}, k ? t(k) : '')))),
    h('tbody', {}, ...rows.map((cells) => h('tr', {}, ...cells.map((c) => h('td', {}, c ?? ''))))));
}

// ---- operator ---------------------------------------------------------------------------------------------

async function viewAdmin() {
  const op = (p, opts = {}) => api(`/console/api/admin/${p}`, { ...opts, as: 'op' });
  const [users, keys, queue, engines, failures] = await Promise.all([op('users'), op('keys'), op('queue'), op('engines'), op('failures')]);
  const who = h('select', { id: 'grant-user' }, ...users.map((u) => h('option', { value: u.name }, u.name)));
  const points = h('input', { type: 'number', id: 'grant-points', value: 100 });
  const note = h('input', { type: 'text', id: 'grant-note', placeholder: t('note') });
  const keyUser = h('select', { id: 'key-user' }, ...users.map((u) => h('option', { value: u.name }, u.name)));
  const made = h('p', { id: 'made-key' });
  const depth = (p, s) => (queue.depth.find((d) => d.priority === p && d.state === s) || { count: 0 }).count;
  view.append(
    h('div', { class: 'card' }, h('h2', {}, t('users')),
      table(['name', 'balance'], users.map((u) => [u.name, h('span', { 'data-balance': u.name }, String(u.balance))]), 'users'),
      h('form', { class: 'row', style: 'margin-top:1rem', onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const r = await op('grant', { method: 'POST', body: { user: who.value, points: Number(points.value), note: note.value || undefined } });
          toast(`${r.user}: ${r.balance} ${t('points')}`);
          route();
        } catch (err) { toast(err.message, true); }
      } }, who, points, note, h('button', { id: 'grant', type: 'submit' }, t('grant'))), h('p', { class: 'hint' }, t('grantHint'))),
    h('div', { class: 'card' }, h('h2', {}, t('keys')),
      table(['prefix', 'user', 'label', 'state', 'rateLimit', ''], keys.map((k) => [
        h('code', {}, k.prefix), k.user, k.label, k.revokedAt ? t('revoked') : t('active'), k.rateLimit ?? t('defaultLimit'),
        k.revokedAt ? '' : h('span', {},
          h('button', { class: 'secondary', onclick: async () => {
            const v = prompt(t('rateLimit'), k.rateLimit ?? '');
            if (v === null) return;
            await op(`keys/${k.prefix}/limit`, { method: 'POST', body: { rateLimit: v === '' ? null : Number(v) } }).catch((e) => toast(e.message, true));
            route();
          } }, t('setLimit')), ' ',
          h('button', { class: 'danger', onclick: async () => { await op(`keys/${k.prefix}/revoke`, { method: 'POST' }); route(); } }, t('revoke'))),
      ]), 'keys'),
      h('p', { class: 'row' }, keyUser, h('button', { class: 'secondary', onclick: async () => {
        const r = await op('keys', { method: 'POST', body: { user: keyUser.value, label: 'console' } });
        made.replaceChildren(t('keyShownOnce'), ' ', h('code', {}, r.key));
      } }, t('createKey'))), made),
    h('div', { class: 'grid2' },
      h('div', { class: 'card', id: 'queue' }, h('h2', {}, t('queue')),
        table(['priority', 'waitingState', 'running'], ['lightning', 'queue'].map((p) => [p, depth(p, 'waiting'), depth(p, 'running')])),
        table(['orderNo', 'user', 'type', 'status', 'progress'], queue.orders.map((o) => [h('code', {}, o.orderNo), o.user, typeName(o.orderType), statusBadge(o.status), bar(o.progress)]))),
      h('div', { class: 'card', id: 'engines' }, h('h2', {}, t('engines')),
        table(['type', 'status', 'reason'], Object.entries(engines.orderTypes).map(([ty, s]) => [typeName(ty), s.ok ? h('span', { class: 'ok' }, t('canRun')) : h('span', { class: 'bad' }, t('cannotRun')), s.reason || ''])),
        h('p', { class: 'hint' }, `${t('modelDir')}: ${engines.modelDir}`),
        h('p', {}, `${t('installed')}: `, ...engines.models.map((m) => h('span', { class: 'pill' }, m))))),
    h('div', { class: 'card', id: 'failures' }, h('h2', {}, t('failures')),
      failures.length
        ? table(['kind', 'count', 'examples'], failures.map((g) => [h('strong', {}, g.kind), g.count, h('div', {}, ...g.examples.map((e) => h('div', { class: 'hint' }, h('code', {}, e.orderNo), ` ${e.reason}`)))]))
        : h('p', { class: 'muted' }, t('nothingFailed'))),
  );
}

// ---- start ------------------------------------------------------------------------------------------------

const langSelect = document.getElementById('lang');
setLang(lang(), false);
langSelect.value = lang();
langSelect.addEventListener('change', () => { setLang(langSelect.value); route(); });
window.addEventListener('hashchange', route);
route();
