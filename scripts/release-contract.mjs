#!/usr/bin/env node
// Releases the contract: bundles openapi/ and writes it to openapi/released/v<major>.json, the
// document `npm run contract:diff` holds later changes against (what clients of that major have).
//
// - v<major>.json does not exist yet (the first release, or info.version's major was bumped): it
//   is written, and the older majors' files stay (their clients are still out there).
// - it exists: the new contract replaces it only if nothing in between breaks a client of it and
//   info.version was raised (minor for additions, patch for docs); a breaking change is refused:
//   make it additive, or bump info.version's major, which releases a new v<major+1>.json instead.
//
// `--head <file>` releases that document instead of bundling openapi/, `--dir <dir>` writes
// elsewhere than openapi/released/ (both for trying it out).
import { writeFileSync, mkdirSync, existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  acceptedFileFor,
  applyAccepted,
  bundleContract,
  compareContracts,
  formatChangelog,
  majorOf,
  readAccepted,
  releasedDir,
  releasedMajors,
  releaseFor,
} from './contract-diff.mjs';

const cmp = (a, b) => {
  const pa = String(a).split(/[.+-]/).map(Number);
  const pb = String(b).split(/[.+-]/).map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] || 0) !== (pb[i] || 0)) return (pa[i] || 0) - (pb[i] || 0);
  return 0;
};

function main(argv) {
  let dir = releasedDir;
  let headFile;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--dir') dir = argv[++i];
    else if (argv[i] === '--head') headFile = argv[++i];
    else
      throw new Error(
        `unknown argument ${argv[i]}; usage: release-contract [--head contract.json] [--dir released-dir]`,
      );
  }
  const head = headFile ? JSON.parse(readFileSync(headFile, 'utf8')) : bundleContract();
  const version = head.info.version;
  const major = majorOf(head);
  const target = join(dir, `v${major}.json`);
  const name = relative(process.cwd(), target);
  const write = () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(target, `${JSON.stringify(head, null, 2)}\n`);
    console.log(`released ${version} as ${name}`);
  };

  if (!existsSync(target)) {
    const previous = releaseFor(major - 1, dir);
    if (previous) {
      const before = JSON.parse(readFileSync(previous.file, 'utf8'));
      console.log(`New major ${major} over v${previous.major} (${before.info.version}); what changed:\n`);
      console.log(formatChangelog(compareContracts(before, head)) || 'No changes.\n');
    } else if (releasedMajors(dir).some((m) => m > major)) {
      console.error(
        `info.version ${version} is below a released major (${releasedMajors(dir).join(', ')}); nothing written`,
      );
      return 1;
    }
    write();
    return 0;
  }

  const released = JSON.parse(readFileSync(target, 'utf8'));
  const changes = compareContracts(released, head);
  const acceptedFile = acceptedFileFor(target);
  applyAccepted(changes, readAccepted(acceptedFile));
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
  if (existsSync(acceptedFile)) {
    // the release now holds what was accepted: nothing left to accept against it
    const file = JSON.parse(readFileSync(acceptedFile, 'utf8'));
    writeFileSync(acceptedFile, `${JSON.stringify({ ...file, accepted: [] }, null, 2)}\n`);
    console.log(`emptied ${relative(process.cwd(), acceptedFile)}`);
  }
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 2;
}
