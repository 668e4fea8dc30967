#!/usr/bin/env node
// Releases the contract: bundles openapi/ and writes it to openapi/released/v<major>.json, the
// document `npm run contract:diff` holds later changes against (what clients of that major have).
//
// - v<major>.json does not exist yet (the first release, or info.version's major was bumped): it
//   is written, and the older majors' files stay (their clients are still out there).
// - it exists: the new contract replaces it only if nothing in between breaks a client of it and
//   info.version was raised (minor for additions, patch for docs); a breaking change is refused:
//   make it additive, or bump info.version's major, which releases a new v<major+1>.json instead.
import { writeFileSync, mkdirSync, existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { bundleContract, compareContracts, formatChangelog, majorOf, releasedDir, releasedMajors, releaseFor } from './contract-diff.mjs';

const cmp = (a, b) => {
  const pa = String(a).split(/[.+-]/).map(Number);
  const pb = String(b).split(/[.+-]/).map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] || 0) !== (pb[i] || 0)) return (pa[i] || 0) - (pb[i] || 0);
  return 0;
};

function main() {
  const head = bundleContract();
  const version = head.info.version;
  const major = majorOf(head);
  const target = join(releasedDir, `v${major}.json`);
  const name = relative(process.cwd(), target);
  const write = () => {
    mkdirSync(releasedDir, { recursive: true });
    writeFileSync(target, `${JSON.stringify(head, null, 2)}\n`);
    console.log(`released ${version} as ${name}`);
  };

  if (!existsSync(target)) {
    const previous = releaseFor(major - 1);
    if (previous) {
      const before = JSON.parse(readFileSync(previous.file, 'utf8'));
      console.log(`New major ${major} over v${previous.major} (${before.info.version}); what changed:\n`);
      console.log(formatChangelog(compareContracts(before, head)) || 'No changes.\n');
    } else if (releasedMajors().some((m) => m > major)) {
      console.error(`info.version ${version} is below a released major (${releasedMajors().join(', ')}); nothing written`);
      return 1;
    }
    write();
    return 0;
  }

  const released = JSON.parse(readFileSync(target, 'utf8'));
  const changes = compareContracts(released, head);
  const breaking = changes.filter((c) => c.type === 'breaking');
  if (breaking.length > 0) {
    console.error(formatChangelog(breaking));
    console.error(
      `${name} not overwritten: ${breaking.length} breaking change(s) against ${released.info.version}. Make them additive, ` +
        `or bump info.version to ${major + 1}.0.0 in openapi/openapi.yaml to release them as v${major + 1}.`,
    );
    return 1;
  }
  if (changes.length === 0 && JSON.stringify(released) === JSON.stringify(head)) {
    console.log(`${name} is already the contract (${version}); nothing to release`);
    return 0;
  }
  if (cmp(version, released.info.version) <= 0) {
    console.error(formatChangelog(changes));
    console.error(
      `${name} not overwritten: the contract changed since ${released.info.version} but info.version is ${version}. ` +
        'Raise it in openapi/openapi.yaml (minor for additions, patch for docs only) and add the entries to CHANGELOG.md.',
    );
    return 1;
  }
  write();
  return 0;
}

try {
  process.exitCode = main();
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 2;
}
