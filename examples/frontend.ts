// What a frontend writes against the typed client (docs/client.md). Type-checked through the
// package's exports by `npm run check:client`, so the example cannot drift from the contract.
import { createTasksClient, type Task } from '@tasks-api/client';

const api = createTasksClient({
  baseUrl: 'http://localhost:3000',
  token: () => localStorage.getItem('access_token') ?? undefined,
});

export async function addAndList(title: string): Promise<Task[]> {
  const created = await api.POST('/api/v1/tasks', {
    body: { title, priority: 'high', tags: ['errands'] },
  });
  if (created.error) throw new Error(created.error.detail); // a Problem: type, title, status, detail…

  const { data, error } = await api.GET('/api/v1/tasks', {
    params: { query: { status: 'pending', limit: 20 } },
  });
  if (error) throw new Error(error.detail);
  return data.items; // Task[]: data.next_cursor is the next page's cursor, or null
}

/** Attaches a file (from an `<input type="file">`) to a task, then fetches its bytes back: the README's attachment example. */
export async function attach(taskId: string, file: File): Promise<Blob> {
  const form = new FormData();
  form.append('file', file);
  const { data: attachment, error } = await api.POST('/api/v1/tasks/{taskId}/attachments', {
    params: { path: { taskId } },
    body: { file: file.name },
    bodySerializer: () => form,
  });
  if (error) throw new Error(error.detail); // 413 too large, 415 a type the server refuses, …
  const { data: blob } = await api.GET('/api/v1/attachments/{attachmentId}/content', {
    params: { path: { attachmentId: attachment.id } },
    parseAs: 'blob',
  });
  return blob!;
}

// The contract, enforced by the compiler:
// @ts-expect-error `title` is a string
void api.POST('/api/v1/tasks', { body: { title: 42 } });
// @ts-expect-error `title` is required
void api.POST('/api/v1/tasks', { body: { priority: 'high' } });
// @ts-expect-error `priority` is low | medium | high
void api.POST('/api/v1/tasks', { body: { title: 'x', priority: 'urgent' } });
// @ts-expect-error there is no such path
void api.GET('/api/v1/todos');
