import type { TasksClient } from '../../packages/client/src/index.js';

/** An endpoint's delivery log as its owner reads it (the newest 100). */
export const deliveriesOf = async (api: TasksClient, webhookId: string) =>
  (await api.GET('/api/v1/webhooks/{webhookId}/deliveries', { params: { path: { webhookId }, query: { limit: 100 } } }))
    .data!.items;

/** `probe()` again every 50 ms until `ok` holds for its value, which it returns; throws with the last value after `timeoutMs`. */
export async function until<T>(probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms: ${JSON.stringify(value).slice(0, 2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
