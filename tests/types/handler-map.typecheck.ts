// Compile-time tests, run by `npm run typecheck`: each line below must be a type error. If one of
// them stops being an error, `@ts-expect-error` itself fails the type-check.
import type { HandlerMap, Handlers, OperationResult } from '../../src/http/handler.js';

// A body the contract does not allow for the status.
// @ts-expect-error the Task schema requires title, completed, ... and has no `owner_id`
export const wrongBody: OperationResult<'getTask'> = { status: 200, body: { id: 'x', owner_id: 'y' } };

// A status the operation does not document.
// @ts-expect-error getTask has no 201 response
export const wrongStatus: OperationResult<'getTask'> = { status: 201, body: undefined };

declare const getTask: Handlers<'getTask'>['getTask'];

// A handler for an operation the contract does not have.
// @ts-expect-error `archiveTask` is not an operationId
export const extraHandler: Handlers<'getTask'> = { getTask, archiveTask: getTask };

// A map missing an operation's handler.
// @ts-expect-error every operation needs a handler
export const incomplete: HandlerMap = { getTask };
