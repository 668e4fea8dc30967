import { tsImport } from 'tsx/esm/api';

/** Jest's globalTeardown: see templates.ts. */
export default async function globalTeardown() {
  const { removeTemplates } = await tsImport('./templates.ts', import.meta.url);
  await removeTemplates();
}
