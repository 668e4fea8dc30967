import { tsImport } from 'tsx/esm/api';

/** Jest's globalSetup, in JavaScript because jest loads it outside its TypeScript transform: see templates.ts. */
export default async function globalSetup() {
  const { makeTemplates } = await tsImport('./templates.ts', import.meta.url);
  await makeTemplates();
}
