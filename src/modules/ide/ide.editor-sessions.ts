import { Type } from 'typebox';
import { IdParam, iso, isoOrNull, NullableTimestamp, Timestamp } from '../../core/schemas.js';
import { EDITOR_STATUSES } from './ide.lifecycles.js';
import { literals, Nullable } from './ide.js';
import type { IdeRow } from './ide.repository.js';

/** One open file in an editor: which file, where the cursor and the scroll are (seed 002's shape). */
export const OpenFile = Type.Object(
  {
    file_id: IdParam,
    cursor_position: Type.Optional(Type.Object({ line: Type.Integer({ minimum: 0 }), column: Type.Integer({ minimum: 0 }) }, { additionalProperties: false })),
    scroll_position: Type.Optional(Type.Object({ top: Type.Number({ minimum: 0 }), left: Type.Number({ minimum: 0 }) }, { additionalProperties: false })),
    selection: Type.Optional(
      Type.Object(
        { start: Type.Object({ line: Type.Integer({ minimum: 0 }), column: Type.Integer({ minimum: 0 }) }), end: Type.Object({ line: Type.Integer({ minimum: 0 }), column: Type.Integer({ minimum: 0 }) }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
const OpenFiles = Type.Array(OpenFile, { maxItems: 200 });
const Layout = Type.Record(Type.String(), Type.Unknown(), { maxProperties: 100, propertyNames: { maxLength: 100 } });

export const EditorSession = Type.Object(
  {
    id: Type.String(), project_id: Type.String(), user_id: Type.String(), status: literals(EDITOR_STATUSES), open_files: OpenFiles,
    active_file_id: Nullable(Type.String()), layout_state: Layout, last_active_at: Timestamp, closed_at: NullableTimestamp,
    created_at: Timestamp, updated_at: Timestamp,
  },
  { title: 'EditorSession' },
);

export const CreateEditorSessionBody = Type.Object(
  {
    /** The service opens a session for a member; a user always opens their own. */
    user_id: Type.Optional(IdParam),
    open_files: Type.Optional(OpenFiles),
    active_file_id: Type.Optional(Nullable(IdParam)),
    layout_state: Type.Optional(Layout),
  },
  { additionalProperties: false },
);

/** Moves the cursor or changes what is open (an open session only); `status: "closed"` closes it. */
export const UpdateEditorSessionBody = Type.Object(
  {
    status: Type.Optional(literals(EDITOR_STATUSES)),
    open_files: Type.Optional(OpenFiles),
    active_file_id: Type.Optional(Nullable(IdParam)),
    layout_state: Type.Optional(Layout),
  },
  { additionalProperties: false },
);

export const editorSessionToApi = (r: IdeRow<'editor_sessions'>) => ({
  id: r.id, project_id: r.project_id, user_id: r.user_id, status: r.status as (typeof EDITOR_STATUSES)[number],
  open_files: r.open_files as never, active_file_id: r.active_file_id, layout_state: r.layout_state as Record<string, unknown>,
  last_active_at: iso(r.last_active_at), closed_at: isoOrNull(r.closed_at),
  created_at: iso(r.created_at), updated_at: iso(r.updated_at),
});
