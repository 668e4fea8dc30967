import { tsImport } from 'tsx/esm/api';

/** Jest's globalSetup, in JavaScript because jest loads it outside its TypeScript transform: see templates.ts. */
export default async function globalSetup() {
  // The AWS SDK warns once per module registry (so once per test file that makes an S3 client, and
  // once per server process with S3) that its releases after January 2027 need Node >= 22. The
  // suite runs on Node 20 on purpose (engines: ^20.19.0 || >=24.0.0), so here the warning is noise;
  // this is the SDK's own switch for it (aws/aws-sdk-js-v3#7983). Set before the workers start, so
  // they and the processes they spawn inherit it; the server itself still warns in production.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { makeTemplates } = await tsImport('./templates.ts', import.meta.url);
  await makeTemplates();
}
