import type { Shape, ShapeName } from './import.js';
import { appBuilder } from './import.app-builder.js';
import { foundation } from './import.foundation.js';
import { llmRelay } from './import.llm-relay.js';
import { videoCredits } from './import.video-credits.js';

/** The shapes built so far (docs/import.md); the others are named in SHAPE_NAMES and refused as "not yet". */
export const SHAPES: readonly Shape[] = [videoCredits, llmRelay, appBuilder, foundation];

export type Detection = { ok: true; shape: Shape; detected: boolean; why: string } | { ok: false; why: string };

/**
 * Which seed design a source is: the named one (checked against its tables), or the one shape whose
 * signature tables are all present. None or several → the caller must say (`--schema`).
 */
export function detectShape(tables: ReadonlySet<string>, asked: ShapeName | undefined): Detection {
  const has = (s: Shape) => s.signature.every((t) => tables.has(t));
  if (asked) {
    const shape = SHAPES.find((s) => s.name === asked);
    if (!shape) return { ok: false, why: `the ${asked} shape is not importable yet (importable: ${SHAPES.map((s) => s.name).join(', ')})` };
    const missing = shape.signature.filter((t) => !tables.has(t));
    if (missing.length > 0) return { ok: false, why: `the source is not ${asked}: missing table(s) ${missing.join(', ')}` };
    return { ok: true, shape, detected: false, why: `${asked} (as asked; tables ${shape.signature.join(', ')} present)` };
  }
  const matches = SHAPES.filter(has);
  if (matches.length === 1) {
    const [shape] = matches as [Shape];
    return { ok: true, shape, detected: true, why: `detected ${shape.name} from tables ${shape.signature.join(', ')}` };
  }
  if (matches.length === 0) return { ok: false, why: `no known shape matches the source's tables (${[...tables].sort().join(', ') || 'none'}); name one with --schema` };
  return { ok: false, why: `several shapes match (${matches.map((s) => s.name).join(', ')}); name one with --schema` };
}
