// Shoal dashboard: the live parts of the server-rendered pages. Every change is an
// ordinary /v1 API call made with the session cookie and the page's CSRF token; the live
// figures and events come over one WebSocket (/ui/live).

const csrf = document.querySelector('meta[name="shoal-csrf"]')?.content ?? '';
const page = document.body.dataset.page;
const wsBase = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}`;

/** Calls the API; resolves to the JSON answer, or throws an Error with the API's message. */
export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { 'x-shoal-csrf': csrf } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!response.ok) throw new Error(data?.message ?? `HTTP ${response.status}`);
  return data;
}

function banner(text) {
  const el = document.getElementById('banner');
  if (!el) return;
  el.textContent = text ?? '';
  el.hidden = !text;
}

function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function tickTimes() {
  for (const t of document.querySelectorAll('time[data-ms]')) {
    t.textContent = ago(Number(t.dataset.ms));
  }
}

function setField(root, field, text) {
  const el = root.querySelector(`[data-f="${field}"]`);
  if (el && el.textContent !== String(text)) el.textContent = String(text);
}

function updateCard(m) {
  const card = document.querySelector(`.card[data-id="${CSS.escape(m.id)}"]`);
  if (!card) return;
  for (const c of [...card.classList]) if (c.startsWith('s-')) card.classList.remove(c);
  card.classList.add(`s-${m.status}`);
  setField(card, 'status', m.status_label);
  for (const k of ['cpu', 'memory', 'disk']) {
    const meter = card.querySelector(`meter[data-f="${k}"]`);
    if (meter) meter.value = m[k];
    setField(card, `${k}_text`, `${m[k]}%`);
  }
  setField(card, 'load', m.load);
  setField(card, 'running', m.running);
  const labels = card.querySelector('ul.labels');
  if (labels && [...labels.children].map((li) => li.textContent).join('\n') !== m.labels.join('\n')) {
    labels.replaceChildren(...m.labels.map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
  }
  const beat = card.querySelector('time[data-f="heartbeat"]');
  if (beat) {
    beat.dataset.ms = m.last_heartbeat_ms;
    beat.textContent = ago(m.last_heartbeat_ms);
  }
}

function updateSummary(s) {
  const box = document.getElementById('summary');
  if (!box) return;
  const put = (key, value) => {
    const el = box.querySelector(`[data-sum="${key}"]`);
    if (el && el.textContent !== String(value)) el.textContent = String(value);
  };
  for (const key of ['machines', 'cores', 'memory_total', 'disk_total', 'avg_cpu', 'avg_memory',
    'health', 'health_reason', 'leader', 'spend']) put(key, s[key]);
  put('kill_switch', s.kill_switch ?? 'off');
  for (const c of s.counts) {
    const el = box.querySelector(`[data-count="${c.class}"]`);
    if (el) el.textContent = String(c.count);
  }
  const health = box.querySelector('[data-sum="health_box"]');
  if (health) {
    for (const c of [...health.classList]) if (c.startsWith('h-')) health.classList.remove(c);
    health.classList.add(`h-${s.health}`);
  }
}

// The live socket: reconnects with a growing pause, resuming after the last event seen.
let lastIndex = null;
let retries = 0;

function connectLive() {
  const since = lastIndex === null ? '' : `?since=${lastIndex}`;
  const socket = new WebSocket(`${wsBase}/ui/live${since}`);
  // Reachable from the console (and the browser test) to see or drop the connection.
  window.shoalLive = socket;
  socket.addEventListener('open', () => {
    retries = 0;
    banner(null);
    document.body.dataset.live = 'open';
    // What changed between the page's rendering (or the last socket) and now came before
    // this socket: pages that show more than cards read it again once.
    document.dispatchEvent(new CustomEvent('shoal-live-open'));
  });
  socket.addEventListener('message', (message) => {
    const msg = JSON.parse(message.data);
    if (msg.type === 'figures') {
      for (const m of msg.machines) updateCard(m);
      if (msg.summary) updateSummary(msg.summary);
    } else if (msg.type === 'event') {
      lastIndex = msg.event.index;
      document.body.dataset.lastEvent = lastIndex;
      document.dispatchEvent(new CustomEvent('shoal-event', { detail: msg.event }));
    } else if (msg.type === 'resume') {
      lastIndex = msg.from;
    }
  });
  socket.addEventListener('close', (event) => {
    document.body.dataset.live = 'closed';
    if (event.code === 4401) {
      location.href = '/login?ended=1';
      return;
    }
    retries = Math.min(retries + 1, 6);
    banner('Connection to the fleet lost: reconnecting…');
    setTimeout(connectLive, 500 * retries);
  });
}

// Selecting machines and acting on them.
function selectedCards() {
  return [...document.querySelectorAll('.card .pick:checked')].map((p) => p.closest('.card'));
}

function countSelected() {
  const el = document.getElementById('selected-count');
  if (el) el.textContent = `${selectedCards().length} selected`;
}

function confirmWith(text) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

const ACTION_NAMES = {
  drain: 'Drain', undrain: 'Undrain', 'batch/restart': 'Restart',
  'batch/update': 'Update', 'batch/apply-config': 'Apply config to',
};

/** Each card's outcome of a drain or undrain answer (DrainResponse). */
function drainOutcome(action, answer, id) {
  if (!answer.machines.includes(id)) return 'left as it was (not selected: busy?)';
  if (answer.unchanged.includes(id)) return action === 'drain' ? 'was already draining' : 'was not drained';
  return action === 'drain' ? 'drained' : 'undrained';
}

/** Each card's outcome of a batch answer (BatchReport). */
function batchOutcome(answer, id) {
  const outcome = answer.machines.find((m) => m.machine === id);
  if (!outcome) return 'left as it was (not selected)';
  return `${outcome.ok ? 'done' : 'failed'}: ${outcome.detail}`;
}

async function act(action) {
  const cards = selectedCards();
  if (cards.length === 0) {
    banner('Select one or more machines first.');
    return;
  }
  const names = cards.map((c) => c.dataset.name).join(', ');
  const body = { machines: cards.map((c) => c.dataset.id) };
  let how = '';
  if (action === 'drain') {
    body.idle_only = document.getElementById('idle-only').checked;
    const deadline = Number(document.getElementById('deadline').value);
    if (deadline > 0) body.deadline_seconds = deadline;
    how = `${body.idle_only ? ' (idle ones only)' : ''}${deadline > 0 ? `, work moved after ${deadline} s` : ''}`;
  }
  const name = ACTION_NAMES[action];
  if (!(await confirmWith(`${name} ${cards.length} machine(s): ${names}${how}?`))) return;
  for (const card of cards) setField(card, 'outcome', `${name}: working…`);
  try {
    const answer = await api('POST', `/v1/${action}`, body);
    for (const card of cards) {
      const id = card.dataset.id;
      const batch = action.startsWith('batch/');
      setField(card, 'outcome', batch ? batchOutcome(answer, id) : drainOutcome(action, answer, id));
    }
  } catch (err) {
    for (const card of cards) setField(card, 'outcome', `${name} failed: ${err.message}`);
  }
}

function setUpFleet() {
  for (const pick of document.querySelectorAll('.card .pick')) pick.addEventListener('change', countSelected);
  document.getElementById('select-all')?.addEventListener('click', () => {
    const picks = [...document.querySelectorAll('.card .pick')];
    const all = picks.every((p) => p.checked);
    for (const p of picks) p.checked = !all;
    countSelected();
  });
  for (const button of document.querySelectorAll('#actions [data-action]')) {
    button.addEventListener('click', () => act(button.dataset.action));
  }
  for (const select of document.querySelectorAll('#filters select')) {
    select.addEventListener('change', () => select.form.requestSubmit());
  }
  document.getElementById('kill-form')?.addEventListener('submit', async (event) => {
    event.preventDefault();
    const on = event.submitter?.value === 'true';
    const reason = document.getElementById('kill-reason').value.trim();
    try {
      const state = await api('PUT', '/v1/killswitch', on ? { on, reason } : { on });
      banner(state.on ? `Kill switch on: ${state.reason}` : 'Kill switch off');
    } catch (err) {
      banner(`Kill switch: ${err.message}`);
    }
  });
  connectLive();
}

// Jobs.
function parseLabels(text) {
  const labels = {};
  for (const pair of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [k, ...rest] = pair.split('=');
    labels[k.trim()] = rest.length ? rest.join('=').trim() : 'true';
  }
  return labels;
}

/** Redraws the jobs table from GET /v1/jobs with the page's state filter. */
async function refreshJobs(names) {
  const state = new URLSearchParams(location.search).get('state');
  const query = new URLSearchParams({ order: 'newest', limit: '100' });
  if (state) query.set('state', state);
  const list = await api('GET', `/v1/jobs?${query}`);
  const rows = list.jobs.map((job) => {
    const row = document.createElement('tr');
    const link = document.createElement('a');
    link.href = `/jobs/${job.id}`;
    link.textContent = `#${job.id}`;
    const code = document.createElement('code');
    code.textContent = job.spec.command.join(' ');
    const last = job.attempts[job.attempts.length - 1];
    const cells = [link, job.state, code, last ? (names.get(last.machine) ?? last.machine) : '',
      String(job.attempts.length)];
    cells.forEach((value, i) => {
      const cell = document.createElement('td');
      if (i === 1) cell.className = `state-${job.state}`;
      cell.append(value);
      row.append(cell);
    });
    return row;
  });
  document.querySelector('#jobs tbody').replaceChildren(...rows);
}

/** Machine names by id, for tables that show where work ran. */
function machineNames() {
  const names = new Map();
  api('GET', '/v1/machines').then((list) => {
    for (const m of list.machines) names.set(m.id, m.name);
  }).catch(() => {});
  return names;
}

function setUpJobs() {
  const names = machineNames();
  let pending = null;
  // Job events redraw the table, at most every 300 ms; so does each new live socket.
  document.addEventListener('shoal-live-open', () => refreshJobs(names).catch(() => {}));
  document.addEventListener('shoal-event', (event) => {
    if (event.detail.topic !== 'job' || pending) return;
    pending = setTimeout(() => {
      pending = null;
      refreshJobs(names).catch((err) => banner(`Jobs: ${err.message}`));
    }, 300);
  });
  document.getElementById('run-form')?.addEventListener('submit', async (event) => {
    event.preventDefault();
    const outcome = document.getElementById('run-outcome');
    const command = document.getElementById('run-command').value.trim();
    const spec = { command: ['sh', '-c', command] };
    const image = document.getElementById('run-image').value.trim();
    if (image) spec.image = image;
    const labels = parseLabels(document.getElementById('run-labels').value);
    if (Object.keys(labels).length) spec.required_labels = labels;
    const target = document.getElementById('run-target').value;
    if (target) spec.agent_id = target;
    outcome.textContent = 'submitting…';
    try {
      const answer = await api('POST', '/v1/jobs', spec);
      location.href = `/jobs/${answer.job.id}`;
    } catch (err) {
      outcome.textContent = `not submitted: ${err.message}`;
    }
  });
  connectLive();
}

const FINISHED = ['completed', 'failed', 'timed_out', 'cancelled'];

/** Rebuilds the job page's state and attempts from GET /v1/jobs/{id}; the job's state. */
async function refreshJob(id, names) {
  const job = await api('GET', `/v1/jobs/${id}`);
  const state = document.getElementById('job-state');
  state.textContent = job.state;
  state.className = `state-${job.state}`;
  const body = document.querySelector('#attempts tbody');
  const rows = job.attempts.map((a) => {
    const row = document.createElement('tr');
    const link = document.createElement('a');
    link.href = `/machines/${a.machine}`;
    link.textContent = names.get(a.machine) ?? a.machine;
    const cells = [String(a.number), link,
      a.finished_at_ms ? 'finished' : a.started_at_ms ? 'running' : 'dispatched',
      a.exit_code ?? '', a.error ?? ''];
    for (const value of cells) {
      const cell = document.createElement('td');
      cell.append(value);
      row.append(cell);
    }
    return row;
  });
  body.replaceChildren(...rows);
  return job.state;
}

/**
 * Follows an output over the logs WebSocket at `logsPath`, appending to `pre`; when the
 * socket closes, `ended()` says whether the work is over (its state) or the follow resumes.
 */
function followLogs(pre, logsPath, ended) {
  const note = document.getElementById('output-state');
  let offset = 0;
  let tries = 0;
  const open = () => {
    const socket = new WebSocket(`${wsBase}${logsPath}?follow=true&offset=${offset}`);
    socket.addEventListener('open', () => { note.textContent = 'following output live'; });
    socket.addEventListener('message', (message) => {
      const chunk = JSON.parse(message.data);
      if (typeof chunk.text === 'string' && chunk.offset + chunk.text.length > offset) {
        pre.append(chunk.text.slice(Math.max(0, offset - chunk.offset)));
        offset = chunk.offset + chunk.text.length;
      }
    });
    socket.addEventListener('close', async () => {
      try {
        const state = await ended();
        if (state) {
          note.textContent = `output complete: ${state}`;
          return;
        }
      } catch (err) {
        note.textContent = `cannot read the state: ${err.message}`;
      }
      tries = Math.min(tries + 1, 10);
      setTimeout(open, 300 * tries);
    });
  };
  open();
}

/** A button that asks first, then POSTs to `path` and says what happened next to it. */
function actionButton(button, outcome, question, path, done) {
  button?.addEventListener('click', async () => {
    if (!window.confirm(question)) return;
    outcome.textContent = 'asking…';
    try {
      await api('POST', path);
      outcome.textContent = done;
    } catch (err) {
      outcome.textContent = `refused: ${err.message}`;
    }
  });
}

function setUpJob(pre) {
  const id = pre.dataset.job;
  const names = machineNames();
  actionButton(document.getElementById('cancel-job'), document.getElementById('cancel-outcome'),
    `Cancel job #${id}?`, `/v1/jobs/${id}/cancel`, 'cancel asked: the job stops');
  // The job's own events (placed, running, ended) redraw its attempts at once.
  document.addEventListener('shoal-event', (event) => {
    if (event.detail.topic === 'job' && String(event.detail.subject) === String(id)) {
      refreshJob(id, names).catch(() => {});
    }
  });
  document.addEventListener('shoal-live-open', () => refreshJob(id, names).catch(() => {}));
  connectLive();
  followLogs(pre, `/v1/jobs/${id}/logs`, async () => {
    const state = await refreshJob(id, names);
    return FINISHED.includes(state) ? state : null;
  });
}

function setUpSession(pre) {
  const showPath = pre.dataset.show;
  actionButton(document.getElementById('terminate-session'),
    document.getElementById('terminate-outcome'), 'Terminate this session?',
    `${showPath}/terminate`, 'terminating: its container stops');
  const stateEl = document.getElementById('session-state');
  followLogs(pre, pre.dataset.logs, async () => {
    const session = await api('GET', showPath);
    stateEl.textContent = session.state;
    stateEl.className = `state-${session.state}`;
    return ['terminated', 'failed'].includes(session.state) ? session.state : null;
  });
  document.getElementById('exec-form')?.addEventListener('submit', async (event) => {
    event.preventDefault();
    const out = document.getElementById('exec-output');
    const command = document.getElementById('exec-command').value.trim();
    out.hidden = false;
    out.textContent = `$ ${command}\n`;
    try {
      const result = await api('POST', `${showPath}/exec`, { command: ['sh', '-c', command] });
      out.append(result.stdout, result.stderr, `\n[exit ${result.exit_code}${result.truncated ? ', output cut' : ''}]`);
    } catch (err) {
      out.append(`not run: ${err.message}`);
    }
  });
  connectLive();
}

// Connecting a machine.
function setUpConnect() {
  const form = document.getElementById('token-form');
  form?.addEventListener('submit', async (event) => {
    event.preventDefault();
    const outcome = document.getElementById('token-outcome');
    const command = document.getElementById('join-command');
    const request = {
      count: 1,
      ttl_seconds: Number(document.getElementById('token-ttl').value),
      labels: parseLabels(document.getElementById('token-labels').value),
    };
    try {
      const made = await api('POST', '/v1/tokens/registration', request);
      command.textContent = `shoald join --token ${made.tokens[0]} --peer ${form.dataset.peer}`;
      command.hidden = false;
      outcome.textContent = `Token made; it works once, until ${new Date(made.expires_at_ms).toLocaleString()}.`;
    } catch (err) {
      outcome.textContent = `No token: ${err.message}`;
    }
  });
}

tickTimes();
setInterval(tickTimes, 1000);
if (page === 'fleet' || page === 'machine') setUpFleet();
if (page === 'jobs') setUpJobs();
if (page === 'job') setUpJob(document.getElementById('output'));
if (page === 'session') setUpSession(document.getElementById('output'));
if (page === 'connect') setUpConnect();
