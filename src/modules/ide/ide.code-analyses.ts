import { Type } from 'typebox';
import { iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import { ANALYSIS_TYPES } from './ide.lifecycles.js';
import { literals, Nullable, Str } from './ide.js';
import type { IdeRow } from './ide.repository.js';

/** Findings as the analysing model wrote them: any JSON object or array (bounded by the body limit). */
const Findings = Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Array(Type.Unknown())]);

export const CodeAnalysis = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), file_path: Type.String(), analysis_type: literals(ANALYSIS_TYPES), result: Findings,
    model: Nullable(Type.String()), created_by: Nullable(Type.String()), expires_at: NullableTimestamp, created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'CodeAnalysis' },
);

export const CreateCodeAnalysisBody = Type.Object(
  {
    file_path: Str(1024),
    analysis_type: literals(ANALYSIS_TYPES),
    result: Findings,
    model: Type.Optional(Str(255)),
    /** When the analysis stops being served and the sweep deletes it (absent: kept). */
    expires_at: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);

export const codeAnalysisToApi = (r: IdeRow<'code_analyses'>) => ({
  id: r.id, project_id: r.project_id, file_path: r.file_path,
  analysis_type: r.analysis_type as (typeof ANALYSIS_TYPES)[number], result: r.result as Record<string, unknown>, model: r.model,
  created_by: r.created_by, expires_at: isoOrNull(r.expires_at), created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});
