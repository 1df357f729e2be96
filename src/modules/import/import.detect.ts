import type { Shape, ShapeName } from './import.js';
import { appBuilder } from './import.app-builder.js';
import { cloudIde } from './import.cloud-ide.js';
import { type Design, DESIGNS } from './import.designs.js';
import { foundation } from './import.foundation.js';
import { llmRelay } from './import.llm-relay.js';
import { videoCredits } from './import.video-credits.js';

/** The shapes built so far (docs/import.md); the other designs are recognised and refused as "not yet". */
export const SHAPES: readonly Shape[] = [videoCredits, llmRelay, appBuilder, foundation, cloudIde];

export type Detection = { ok: true; shape: Shape; detected: boolean; why: string } | { ok: false; why: string };

const importable = () => SHAPES.map((s) => s.name).join(', ');

/**
 * Which seed design a source is. Named (`--schema`): checked against its signature tables. Not
 * named: the designs whose signature tables are all present are candidates; the one with the most
 * of its tables present wins, unless another candidate's signature lies outside the winner's own
 * tables (a merged database: the caller must say, as for none). A design recognised but not built
 * is refused by name.
 */
export function detectShape(tables: ReadonlySet<string>, asked: ShapeName | undefined): Detection {
  if (asked) {
    const shape = SHAPES.find((s) => s.name === asked);
    if (!shape) return { ok: false, why: `the ${asked} shape is not importable yet (importable: ${importable()})` };
    const missing = shape.signature.filter((t) => !tables.has(t));
    if (missing.length > 0) return { ok: false, why: `the source is not ${asked}: missing table(s) ${missing.join(', ')}` };
    return { ok: true, shape, detected: false, why: `${asked} (as asked; tables ${shape.signature.join(', ')} present)` };
  }
  const present = (d: Design) => d.tables.filter((t) => tables.has(t)).length;
  const candidates = DESIGNS.filter((d) => d.signature.every((t) => tables.has(t))).sort((a, b) => present(b) - present(a));
  const [best] = candidates;
  if (!best) return { ok: false, why: `no known shape matches the source's tables (${[...tables].sort().join(', ') || 'none'}); name one with --schema` };
  // Another candidate whose signature the winner's own tables explain is no rival; any other is.
  const rivals = candidates.filter((d) => d !== best && (present(d) === present(best) || !d.signature.every((t) => best.tables.includes(t))));
  if (rivals.length > 0) return { ok: false, why: `several shapes match (${[best, ...rivals].map((d) => d.name).join(', ')}); name one with --schema` };
  const found = `detected ${best.name} from tables ${best.signature.join(', ')} (${present(best)} of the ${best.tables.length} tables of seed ${best.seed}'s design present)`;
  const shape = SHAPES.find((s) => s.name === best.name);
  if (!shape) return { ok: false, why: `${found}; the ${best.name} shape is not importable yet (importable: ${importable()})` };
  return { ok: true, shape, detected: true, why: found };
}
