import base from './jest.config.js';

/** The browser suite (`npm run test:e2e`): needs Debian's chromium at /usr/bin/chromium. */
export default {
  ...base,
  testMatch: ['<rootDir>/tests/e2e/**/*.e2e.ts'],
  testTimeout: 60000,
};
