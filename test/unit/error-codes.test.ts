import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ERROR_CODES,
  FAILURE_REASONS,
  REASON_STATUS,
  codeStatus,
  errorCodeTable,
  type ErrorCode,
} from '../../src/observability/error-codes.js';
import { REPO_ROOT } from '../support/paths.js';

const START = '<!-- error-codes:start -->';
const END = '<!-- error-codes:end -->';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('error code registry', () => {
  it('docs/errors.md holds the generated table', () => {
    const path = join(REPO_ROOT, 'docs', 'errors.md');
    const page = readFileSync(path, 'utf8');
    const [head, rest] = page.split(START);
    const tail = rest!.split(END)[1];
    const want = `${head}${START}\n${errorCodeTable()}\n${END}${tail}`;
    if (process.env.UPDATE_ERROR_DOC === '1') writeFileSync(path, want);
    expect(readFileSync(path, 'utf8')).toBe(want);
  });

  it('every code is raised somewhere in src/ (no dead entries)', () => {
    const text = sources(join(REPO_ROOT, 'src'))
      .filter((p) => !p.endsWith('error-codes.ts'))
      .map((p) => readFileSync(p, 'utf8'))
      .join('\n');
    const dead = (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => !text.includes(`'${c}'`));
    expect(dead).toEqual([]);
  });

  it('README and docs/server.md name every delivered status', () => {
    const statuses = new Set([
      ...FAILURE_REASONS.map((r) => REASON_STATUS[r]),
      ...(Object.keys(ERROR_CODES) as ErrorCode[]).map(codeStatus),
    ]);
    statuses.delete(499); // client_cancelled: never delivered
    for (const doc of ['README.md', 'docs/server.md']) {
      const text = readFileSync(join(REPO_ROOT, doc), 'utf8');
      const section = text.slice(text.search(/Errors are/));
      const missing = [...statuses].filter((s) => !new RegExp(`\\b${s}\\b`).test(section.slice(0, 1500)));
      expect({ doc, missing }).toEqual({ doc, missing: [] });
    }
  });
});
