import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { must } from '../src/lib/must.js';

/**
 * The layer rule (docs/architecture.md): the domain speaks domain. Which file may import what is
 * read from the source itself, so a new module cannot quietly reach into the HTTP layer.
 */
const ROOT = resolve(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return filesUnder(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every import of a file (static, re-export and dynamic), as paths under src/ or package names. */
export function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)].map((m) => m[1] ?? must(m[2], 'm[2]'));
  return specs.map((s) => (s.startsWith('.') ? relative(SRC, resolve(dirname(file), s)).replace(/\.js$/, '.ts') : s));
}

const isHttp = (target: string) => target.startsWith('http/');
const isFastify = (target: string) => target === 'fastify' || target.startsWith('@fastify/');
const isRoutes = (target: string) => target.endsWith('.routes.ts');
/** Credits' files but its port: the ledger has one owner (docs/ledger.md, "The port"). */
const isLedgerInternal = (target: string) => target.startsWith('modules/credits/') && target !== 'modules/credits/credits.port.ts';

/** [which files, what they may not import, why]. */
const RULES: { files: (f: string) => boolean; forbidden: (t: string) => boolean; why: string }[] = [
  {
    files: (f) => f.startsWith('modules/') && !isRoutes(f),
    forbidden: (t) => isHttp(t) || isFastify(t),
    why: 'modules speak domain: outcomes and DomainErrors; only *.routes.ts know HTTP',
  },
  {
    files: (f) => f.startsWith('core/') || f.startsWith('lib/') || f.startsWith('db/') || f.startsWith('sdk/') || f.startsWith('config/'),
    forbidden: (t) => isHttp(t) || isFastify(t) || isRoutes(t),
    why: 'core, lib, db, config and the SDK sit below HTTP',
  },
  {
    files: (f) => f.startsWith('lib/'),
    forbidden: (t) => t.startsWith('db/') || t.startsWith('modules/') || t.startsWith('core/'),
    why: 'lib is generic: it knows no database and no domain',
  },
  {
    files: (f) => f.startsWith('db/'),
    forbidden: (t) => t.startsWith('modules/'),
    why: 'the database layer knows no module',
  },
  {
    files: (f) => f.startsWith('modules/'),
    forbidden: (t) => isRoutes(t),
    why: 'routes are wired by the composition root (src/app.ts), never imported by a module',
  },
  {
    files: (f) => f.startsWith('modules/') && !f.startsWith('modules/credits/'),
    forbidden: isLedgerInternal,
    why: 'the ledger has one owner: other modules reach credits only through its port (credits.port.ts)',
  },
];

/** The violations of RULES in a set of files (path under src/ → its imports). */
export function violations(files: Map<string, string[]>): string[] {
  const out: string[] = [];
  for (const [file, imports] of files) {
    for (const rule of RULES) {
      if (!rule.files(file)) continue;
      for (const t of imports) if (rule.forbidden(t) && t !== file) out.push(`${file} imports ${t}: ${rule.why}`);
    }
  }
  return out;
}

describe('layers', () => {
  const tree = new Map(filesUnder(SRC).map((f) => [relative(SRC, f), importsOf(f)]));

  it('no module, core, lib, db or SDK file imports the HTTP layer, and each layer imports only those below it', () => {
    expect(tree.size).toBeGreaterThan(100);
    expect(violations(tree)).toEqual([]);
  });

  it('the check itself catches a module that imports src/http, fastify, another module’s routes or the ledger’s internals', () => {
    const file = join(SRC, 'modules/credits/credits.service.ts');
    const planted = new Map([
      ['modules/credits/credits.service.ts', importsOf(file, "import { statusOf } from '../../http/errors.js';\nimport type { FastifyInstance } from 'fastify';")],
      ['modules/jobs/jobs.service.ts', importsOf(join(SRC, 'modules/jobs/jobs.service.ts'), "export { x } from '../credits/credits.routes.js';")],
      ['lib/ids.ts', importsOf(join(SRC, 'lib/ids.ts'), "const m = await import('../db/faults.js');")],
      ['modules/credits/credits.routes.ts', importsOf(file, "import { statusOf } from '../../http/errors.js';")],
      [
        'modules/billing/billing.usage.service.ts',
        importsOf(join(SRC, 'modules/billing/billing.usage.service.ts'), "import { LedgerSession } from '../credits/credits.engine.js';\nimport type { Ledger } from '../credits/credits.port.js';"),
      ],
      ['modules/credits/credits.batch-sql.ts', importsOf(file, "import { LedgerSession } from './credits.engine.js';")],
    ]);
    expect(violations(planted).map((v) => v.split(':')[0])).toEqual([
      'modules/credits/credits.service.ts imports http/errors.ts',
      'modules/credits/credits.service.ts imports fastify',
      'modules/jobs/jobs.service.ts imports modules/credits/credits.routes.ts',
      'modules/jobs/jobs.service.ts imports modules/credits/credits.routes.ts',
      'lib/ids.ts imports db/faults.ts',
      'modules/billing/billing.usage.service.ts imports modules/credits/credits.engine.ts',
    ]);
  });
});
