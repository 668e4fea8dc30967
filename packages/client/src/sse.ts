/** One event of a `text/event-stream`, as `EventSource` would dispatch it. */
export interface ServerSentEvent {
  /** The last event ID when it was dispatched (`MessageEvent.lastEventId`): this event's `id:`, or the latest before it. */
  id: string;
  /** Its `event:` field, `message` when it had none. */
  event: string;
  /** Its `data:` lines, joined by line feeds. */
  data: string;
}

/**
 * A `text/event-stream` parser as the WHATWG HTML standard's "Server-sent events" section
 * defines it (what `EventSource` does), fed the body's bytes as they arrive: chunks may split a
 * line, a CRLF or a UTF-8 character anywhere. Lines end with CRLF, LF or CR; `data:` lines
 * accumulate; comments and unknown fields are ignored; an `id:` containing NUL is ignored; a
 * `retry:` of digits only goes to `onRetry`; an event the stream ends in the middle of is dropped.
 */
export function createSSEParser(handlers: {
  onEvent(event: ServerSentEvent): void;
  onRetry?(ms: number): void;
}): (chunk: Uint8Array) => void {
  // UTF-8, one leading byte order mark dropped, invalid bytes as U+FFFD: what the standard says.
  const decoder = new TextDecoder();
  let line = '';
  let afterCR = false; // the previous chunk ended with CR: a LF opening this one belongs to it
  let id = '';
  let event = '';
  let data = '';

  const field = (text: string): void => {
    if (text === '') {
      if (data !== '') handlers.onEvent({ id, event: event || 'message', data: data.slice(0, -1) });
      data = '';
      event = '';
      return;
    }
    const colon = text.indexOf(':');
    if (colon === 0) return; // a comment (a heartbeat)
    const name = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') data += `${value}\n`;
    else if (name === 'event') event = value;
    else if (name === 'id' && !value.includes('\0')) id = value;
    else if (name === 'retry' && /^[0-9]+$/.test(value)) handlers.onRetry?.(Number(value));
  };

  return (chunk) => {
    let text = decoder.decode(chunk, { stream: true });
    if (text === '') return;
    if (afterCR && text.startsWith('\n')) text = text.slice(1);
    afterCR = false;
    let start = 0;
    for (const end of text.matchAll(/\r\n|\r|\n/g)) {
      field(line + text.slice(start, end.index));
      line = '';
      start = end.index + end[0].length;
      if (end[0] === '\r' && start === text.length) afterCR = true;
    }
    line += text.slice(start);
  };
}
