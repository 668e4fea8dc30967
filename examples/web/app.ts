// The tasks-api web example: a page on an origin of its own that logs in to the API's built-in
// issuer and manages the user's tasks through @tasks-api/client, live: changes made anywhere else
// show up as they happen. No framework: the DOM, and textContent only (nothing the API returns is
// ever parsed as HTML).
import {
  createSession,
  createTasksClient,
  ifMatch,
  ProblemError,
  subscribe,
  unwrap,
  type Change,
  type Problem,
  type SessionStorage,
  type SubscriptionStatus,
  type Task,
} from '@tasks-api/client';

/** The API's origin, baked in at build time (`--api` / API_URL, see serve.mjs). */
declare const __TASKS_API_URL__: string;

/** `?api=<origin>` overrides the built-in API origin; `?limit=<n>` sets the page size (default 10). */
const params = new URLSearchParams(location.search);
const API_URL = httpOrigin(params.get('api')) ?? httpOrigin(__TASKS_API_URL__) ?? 'http://localhost:3000';
const PAGE_SIZE = Math.min(100, Math.max(1, Number(params.get('limit')) || 10));

function httpOrigin(value: string | null): string | undefined {
  if (!value) return undefined;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

// The session's tokens live in localStorage, one entry per API, so a reload stays logged in.
// (localStorage is readable by any script on this origin: the page loads no third-party script,
// and its CSP, set by serve.mjs, allows none.)
const STORAGE_KEY = `tasks-api.session ${API_URL}`;
const storage: SessionStorage = {
  get: () => localStorage.getItem(STORAGE_KEY),
  set: (value) => localStorage.setItem(STORAGE_KEY, value),
  remove: () => localStorage.removeItem(STORAGE_KEY),
};
const session = createSession({ baseUrl: API_URL, storage });
// Every request carries the session's access token, refreshed before it expires; a 401 gets one
// refresh and one retry. POST /tasks gets an Idempotency-Key, so that retry cannot create twice.
const api = createTasksClient({ baseUrl: API_URL, session });

// ---------------------------------------------------------------------------------------------
// The page's elements.

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from index.html`);
  return found as T;
}

const ui = {
  status: element<HTMLParagraphElement>('status'),
  account: element<HTMLDivElement>('account'),
  whoami: element<HTMLSpanElement>('whoami'),
  live: element<HTMLSpanElement>('live'),
  logout: element<HTMLButtonElement>('logout'),
  auth: element<HTMLElement>('auth'),
  authForm: element<HTMLFormElement>('auth-form'),
  email: element<HTMLInputElement>('email'),
  password: element<HTMLInputElement>('password'),
  tasks: element<HTMLElement>('tasks'),
  newTask: element<HTMLFormElement>('new-task'),
  title: element<HTMLInputElement>('title'),
  priority: element<HTMLSelectElement>('priority'),
  due: element<HTMLInputElement>('due'),
  search: element<HTMLFormElement>('search'),
  q: element<HTMLInputElement>('q'),
  listError: element<HTMLParagraphElement>('list-error'),
  list: element<HTMLUListElement>('task-list'),
  empty: element<HTMLParagraphElement>('empty'),
  firstPage: element<HTMLButtonElement>('first-page'),
  nextPage: element<HTMLButtonElement>('next-page'),
};

// ---------------------------------------------------------------------------------------------
// Errors: a 422's errors[] next to the fields they point at, anything else in the form's message.

/**
 * Shows `error` in `form`: each 422 entry whose JSON pointer names a field (`/title` → the field
 * with that `data-pointer`, or the input named like it) gets its detail in `#<id>-error` and
 * `aria-invalid`; the rest, and any other problem, go to `#<form id>-form-error`.
 */
function showError(
  form: HTMLFormElement,
  error: unknown,
  fields: Record<string, HTMLInputElement | HTMLSelectElement>,
): void {
  clearErrors(form);
  const general: string[] = [];
  if (error instanceof ProblemError) {
    const problem = error.problem as Problem;
    if (problem.errors?.length) {
      for (const entry of problem.errors) {
        const field = fields[entry.pointer];
        if (field) {
          // One message per field, the first the API gave (an empty title breaks two rules).
          const slot = element(`${field.id}-error`);
          if (!slot.textContent) slot.textContent = readable(entry.detail);
          field.setAttribute('aria-invalid', 'true');
        } else {
          general.push(`${entry.pointer || 'The request'}: ${entry.detail}`);
        }
      }
      if ((problem.errors_total ?? 0) > problem.errors.length)
        general.push(`(${problem.errors_total! - problem.errors.length} more not shown)`);
    } else {
      general.push(problem.detail);
    }
  } else {
    general.push(networkMessage(error));
  }
  const slot = form.querySelector<HTMLElement>('.error[id$="-form-error"]');
  if (slot) slot.textContent = general.join(' ');
  // Focus the first field in error, so keyboard and screen-reader users land on it.
  form.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
}

function clearErrors(form: HTMLFormElement): void {
  for (const slot of form.querySelectorAll('.error')) slot.textContent = '';
  for (const field of form.querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
}

/** The API's detail as a sentence; a failed text pattern (all blank, or U+0000) said in words rather than as the regex. */
function readable(detail: string): string {
  if (detail.startsWith('must match pattern'))
    return 'Must not be blank, nor contain characters that cannot be stored.';
  return `${detail.charAt(0).toUpperCase()}${detail.slice(1)}.`;
}

/** A fetch that never got an answer: in a browser, most often the API is down or refuses this origin (CORS). */
function networkMessage(error: unknown): string {
  if (error instanceof TypeError) {
    return `Cannot reach the API at ${API_URL}. Is it running, with CORS_ORIGINS=${location.origin}?`;
  }
  return error instanceof Error ? error.message : String(error);
}

function say(message: string): void {
  ui.status.textContent = message;
}

/** Runs `action` with `button` (and its form's submit buttons) disabled, so a double click sends once. */
async function busy(controls: (HTMLButtonElement | null | undefined)[], action: () => Promise<void>): Promise<void> {
  const buttons = controls.filter((control): control is HTMLButtonElement => control != null);
  for (const button of buttons) button.disabled = true;
  try {
    await action();
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Logged in or not.

async function showLoggedIn(): Promise<void> {
  ui.auth.hidden = true;
  ui.tasks.hidden = false;
  ui.account.hidden = false;
  ui.whoami.textContent = '';
  let sub: string | undefined;
  try {
    const me = await unwrap(api.GET('/api/v1/me'));
    ui.whoami.textContent = `Logged in as ${me.email ?? me.sub}`;
    sub = me.sub;
  } catch (error) {
    if (await loggedOutBy(error)) return;
  }
  await loadPage(undefined);
  // Live once the list is read, so that the stream only ever brings what is newer than it.
  if (sub !== undefined && !ui.tasks.hidden) goLive(sub);
  else showLive('closed');
}

function showLoggedOut(message = ''): void {
  stopLive();
  ui.tasks.hidden = true;
  ui.account.hidden = true;
  ui.auth.hidden = false;
  ui.whoami.textContent = '';
  ui.list.replaceChildren();
  tasks.clear();
  say(message);
}

/** A 401 the session could not recover from (the refresh token was refused): back to the login form. */
async function loggedOutBy(error: unknown): Promise<boolean> {
  if (error instanceof ProblemError && error.status === 401 && !(await session.isLoggedIn())) {
    showLoggedOut('Your session has ended. Please log in again.');
    return true;
  }
  return false;
}

ui.authForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const submitter = event.submitter as HTMLButtonElement | null;
  const registering = submitter?.value === 'register';
  const credentials = { email: ui.email.value.trim(), password: ui.password.value };
  void busy([...ui.authForm.querySelectorAll('button')], async () => {
    clearErrors(ui.authForm);
    try {
      await (registering ? session.register(credentials) : session.login(credentials));
    } catch (error) {
      showError(ui.authForm, error, { '/email': ui.email, '/password': ui.password });
      return;
    }
    ui.password.value = '';
    say(registering ? 'Account created; you are logged in.' : 'Logged in.');
    await showLoggedIn();
  });
});

ui.logout.addEventListener('click', () => {
  void busy([ui.logout], async () => {
    stopLive();
    try {
      // Forgets the tokens at once (localStorage too), then revokes the login at the API.
      await session.logout();
      showLoggedOut('Logged out.');
    } catch (error) {
      showLoggedOut(
        `Logged out here, but the API did not confirm it: ${error instanceof ProblemError ? (error.problem as Problem).detail : networkMessage(error)}`,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The list: one page at a time, following next_cursor.

/** The tasks shown, as the client returned them (ifMatch reads their ETag). */
const tasks = new Map<string, Task>();
let query = '';
let pageNumber = 1;
/** The cursor the page shown was read with (none for the first), and the next page's. */
let pageCursor: string | undefined;
let nextCursor: string | null = null;
/** For each read of the list under way, the changes the stream brought meanwhile: the read may predate them. */
const reading = new Set<Change[]>();

async function loadPage(cursor: string | undefined): Promise<void> {
  ui.listError.textContent = '';
  ui.list.setAttribute('aria-busy', 'true');
  const missed: Change[] = [];
  reading.add(missed);
  try {
    const page = await unwrap(
      api.GET('/api/v1/tasks', {
        params: { query: { limit: PAGE_SIZE, ...(cursor ? { cursor } : {}), ...(query ? { q: query } : {}) } },
      }),
    );
    if (!cursor) pageNumber = 1;
    pageCursor = cursor;
    tasks.clear();
    for (const task of page.items) tasks.set(task.id, task);
    nextCursor = page.next_cursor;
    for (const change of missed) apply(change);
    render();
    say(
      `${query ? `Tasks matching “${query}”` : 'Your tasks'}, page ${pageNumber}: ${page.items.length} shown${nextCursor ? ', more on the next page' : ''}.`,
    );
  } catch (error) {
    if (await loggedOutBy(error)) return;
    if (error instanceof ProblemError && error.status === 422) showError(ui.search, error, { '/q': ui.q });
    else
      ui.listError.textContent =
        error instanceof ProblemError ? (error.problem as Problem).detail : networkMessage(error);
  } finally {
    reading.delete(missed);
    ui.list.setAttribute('aria-busy', 'false');
  }
}

/** The list's order, the API's default: newest first (created_at, then id). */
function newestFirst(a: Task, b: Task): number {
  return Date.parse(b.created_at) - Date.parse(a.created_at) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

function render(): void {
  ui.list.replaceChildren(...[...tasks.values()].sort(newestFirst).map(taskItem));
  ui.empty.hidden = tasks.size > 0;
  ui.nextPage.hidden = nextCursor === null;
  ui.firstPage.hidden = pageNumber === 1;
}

function taskItem(task: Task): HTMLLIElement {
  const item = document.createElement('li');
  item.dataset.id = task.id;
  item.classList.toggle('done', task.completed);

  const title = document.createElement('span');
  title.className = 'title';
  title.textContent = task.title;

  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.append(`${task.priority} priority`);
  if (task.due_at) {
    const due = document.createElement('time');
    due.dateTime = task.due_at;
    due.textContent = new Date(task.due_at).toLocaleDateString();
    meta.append(', due ', due);
  }
  if (task.completed) meta.append(', done');

  const toggle = document.createElement('button');
  toggle.type = 'button';
  toggle.textContent = task.completed ? 'Reopen' : 'Complete';
  toggle.setAttribute('aria-label', `${task.completed ? 'Reopen' : 'Complete'} “${task.title}”`);
  toggle.addEventListener('click', () => void busy([toggle], () => setCompleted(task.id, !task.completed)));

  const remove = document.createElement('button');
  remove.type = 'button';
  remove.textContent = 'Delete';
  remove.setAttribute('aria-label', `Delete “${task.title}”`);
  remove.addEventListener('click', () => void busy([remove], () => deleteTask(task.id)));

  item.append(title, ' ', meta, ' ', toggle, ' ', remove);
  return item;
}

ui.nextPage.addEventListener('click', () => {
  if (nextCursor === null) return;
  const cursor = nextCursor;
  void busy([ui.nextPage], async () => {
    pageNumber++;
    await loadPage(cursor);
  });
});

ui.firstPage.addEventListener('click', () => void busy([ui.firstPage], () => loadPage(undefined)));

ui.search.addEventListener('submit', (event) => {
  event.preventDefault();
  clearErrors(ui.search);
  query = ui.q.value.trim();
  void busy([ui.search.querySelector('button')], () => loadPage(undefined));
});

// ---------------------------------------------------------------------------------------------
// Changes: create, complete (If-Match), delete (If-Match).

ui.newTask.addEventListener('submit', (event) => {
  event.preventDefault();
  // Sent as typed: the API validates (an empty or 201-character title is its 422, shown at the field).
  const body = {
    title: ui.title.value,
    priority: ui.priority.value as Task['priority'],
    // A date input gives YYYY-MM-DD: due at the start of that day, here.
    ...(ui.due.value ? { due_at: new Date(`${ui.due.value}T00:00:00`).toISOString() } : {}),
  };
  void busy([ui.newTask.querySelector('button')], async () => {
    clearErrors(ui.newTask);
    try {
      const task = await unwrap(api.POST('/api/v1/tasks', { body }));
      ui.newTask.reset();
      say(`Added “${task.title}”.`);
    } catch (error) {
      if (await loggedOutBy(error)) return;
      showError(ui.newTask, error, { '/title': ui.title, '/priority': ui.priority, '/due_at': ui.due });
      return;
    }
    // The new task is the newest: show the first page (of the current search).
    await loadPage(undefined);
  });
});

async function setCompleted(id: string, completed: boolean): Promise<void> {
  const task = tasks.get(id);
  if (!task) return;
  ui.listError.textContent = '';
  try {
    // If-Match: the version this page showed; if someone changed the task since, 412 and nothing changes.
    const updated = await unwrap(
      api.PATCH('/api/v1/tasks/{taskId}', {
        params: { path: { taskId: id }, header: ifMatch(task) },
        body: { completed },
      }),
    );
    tasks.set(id, updated);
    render();
    say(`${completed ? 'Completed' : 'Reopened'} “${updated.title}”.`);
  } catch (error) {
    await changeFailed(error);
  }
}

async function deleteTask(id: string): Promise<void> {
  const task = tasks.get(id);
  if (!task) return;
  ui.listError.textContent = '';
  try {
    await unwrap(api.DELETE('/api/v1/tasks/{taskId}', { params: { path: { taskId: id }, header: ifMatch(task) } }));
    say(`Deleted “${task.title}”.`);
  } catch (error) {
    await changeFailed(error);
    return;
  }
  // Read this page again, so that it fills up from the next one (a cursor is a position, not an offset).
  await loadPage(pageCursor);
}

async function changeFailed(error: unknown): Promise<void> {
  if (await loggedOutBy(error)) return;
  if (error instanceof ProblemError && (error.status === 412 || error.status === 404)) {
    // Changed or deleted elsewhere since this page was loaded: show what is there now.
    await loadPage(undefined);
    ui.listError.textContent = `${(error.problem as Problem).detail} The list has been reloaded.`;
    return;
  }
  ui.listError.textContent = error instanceof ProblemError ? (error.problem as Problem).detail : networkMessage(error);
}

// ---------------------------------------------------------------------------------------------
// Live: the change stream (GET /api/v1/changes/stream) applied to the page shown.

/** Aborted to unsubscribe: on logging out, here or in another tab. */
let live: AbortController | undefined;
/** Whether the subscription was open once: then "connecting" is reconnecting. */
let wasOpen = false;

function goLive(sub: string): void {
  stopLive();
  const stop = (live = new AbortController());
  // The position in the feed, kept across reloads so that a reload resumes rather than lists every
  // task again. One per API and user: another user logging in here never resumes from it.
  const key = `tasks-api.changes ${API_URL} ${sub}`;
  ui.live.title = '';
  wasOpen = false;
  subscribe(api, {
    signal: stop.signal,
    store: { get: () => localStorage.getItem(key), set: (token) => localStorage.setItem(key, token) },
    onChange: (change) => {
      for (const missed of reading) missed.push(change);
      apply(change);
      render();
    },
    // No position stored (or one too old, 410): `tasks` is every task there is. What this page
    // shows and is gone goes; the rest is applied as changes.
    onResync: ({ tasks: all }) => {
      const ids = new Set(all.map((task) => task.id));
      for (const id of tasks.keys()) if (!ids.has(id)) tasks.delete(id);
      for (const task of all) upsert(task);
      render();
    },
    onStatus: (status) => {
      if (!stop.signal.aborted) showLive(status);
    },
    onError: (error, retryInMs) => {
      // Failures it retries show as "Reconnecting…"; one that stopped it is said on the indicator.
      if (retryInMs !== undefined || stop.signal.aborted) return;
      ui.live.title = error instanceof ProblemError ? (error.problem as Problem).detail : networkMessage(error);
      void loggedOutBy(error);
    },
  });
}

function stopLive(): void {
  live?.abort();
  live = undefined;
  ui.live.textContent = '';
  delete ui.live.dataset.state;
}

function showLive(status: SubscriptionStatus): void {
  if (status === 'open') wasOpen = true;
  ui.live.dataset.state = status;
  ui.live.textContent = {
    connecting: wasOpen ? 'Reconnecting…' : 'Connecting…',
    open: 'Live',
    waiting: 'Reconnecting…',
    resyncing: 'Catching up…',
    closed: 'Not live',
  }[status];
}

/**
 * One change, applied to the page shown: a deleted task leaves it; a changed one is updated where
 * it is, or leaves if it no longer matches the search; a task not shown joins the first page when
 * it matches and sorts among what is shown there (a new task does: it is the newest). The page
 * can then hold more or fewer than `limit` tasks until it is read again; other pages only update
 * and remove what they show.
 */
function apply(change: Change): void {
  if (change.op === 'delete') tasks.delete(change.task.id);
  else upsert(change.task);
}

function upsert(task: Task): void {
  const shown = tasks.get(task.id);
  if (shown && shown.version >= task.version) return; // shown as it is already (this page's own change)
  if (!matches(task)) tasks.delete(task.id);
  else if (shown || belongsOnThisPage(task)) tasks.set(task.id, task);
}

/** The search as the API applies `q`: the title or the description contains it, ignoring case. */
function matches(task: Task): boolean {
  const q = query.toLowerCase();
  return !q || task.title.toLowerCase().includes(q) || (task.description ?? '').toLowerCase().includes(q);
}

function belongsOnThisPage(task: Task): boolean {
  if (pageNumber !== 1) return false;
  const last = [...tasks.values()].sort(newestFirst).at(-1);
  return nextCursor === null || last === undefined || newestFirst(task, last) < 0;
}

// ---------------------------------------------------------------------------------------------

// Another tab of this page logging in or out changes the same localStorage entry: follow it.
window.addEventListener('storage', (event) => {
  if (event.key !== STORAGE_KEY && event.key !== null) return;
  const loggedIn = localStorage.getItem(STORAGE_KEY) !== null;
  if (!loggedIn && !ui.tasks.hidden) showLoggedOut('Logged out in another tab.');
  else if (loggedIn && ui.tasks.hidden) void showLoggedIn();
});

if (await session.isLoggedIn()) await showLoggedIn();
else showLoggedOut();
