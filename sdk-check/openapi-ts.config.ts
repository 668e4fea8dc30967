// @hey-api/openapi-ts's configuration, as its docs set one up: the bundled contract in, the Fetch
// API client, its types and SDK functions out. scripts/check-sdk.sh runs it from sdk-check/.
import { defineConfig } from '@hey-api/openapi-ts';

export default defineConfig({
  input: '../generated/openapi.json',
  output: 'out/hey-api',
  plugins: ['@hey-api/client-fetch', '@hey-api/typescript', '@hey-api/sdk'],
});
