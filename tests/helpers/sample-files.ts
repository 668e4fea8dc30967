import { crc32, deflateSync } from 'node:zlib';
import { DEFAULT_ALLOWED_TYPES } from '../../src/config.js';

/**
 * Small (under 8 KiB), real files of every type the server accepts by default, built byte by byte
 * so that the server's own detection (`sniff()` in src/attachments/content.ts: the file-type
 * package, then its UTF-8 text fallback) names each one as what it is, and `decideType()` accepts
 * each when it is declared as its own type.
 *
 * `seed` changes some of the content (text, a comment or metadata, pixels, a random-ish token), so
 * uploads of the same type are not byte-identical: the server dedupes identical files per owner.
 * The same type and seed always give the same bytes (the default seed is 0).
 *
 * What each type's bytes must be for the server to agree:
 *
 * - Binary formats: file-type reads the signature. PNG: the signature, then chunks up to the first
 *   IDAT (an IHDR of exactly 13 bytes first). JPEG: FF D8 FF, not followed by F7 (that is JPEG-LS).
 *   GIF: `GIF`. WebP: `RIFF`, a size, `WEBP`. AVIF: an ISO-BMFF `ftyp` box first whose major brand
 *   is `avif` (or `avis`). PDF: `%PDF`.
 * - Office Open XML (docx, xlsx, pptx): a zip whose local file headers file-type walks in order. The
 *   `[Content_Types].xml` entry (readable: stored or deflated, at most file-type's text-entry
 *   limit) decides: the first `ContentType="….main+xml"` in it names the type, minus `.main+xml`
 *   (`…wordprocessingml.document.main+xml` → docx). Only if that entry cannot be read does
 *   file-type fall back to guessing from a `word/`, `ppt/` or `xl/` entry. No entry before it may
 *   be `mimetype`, `META-INF/MANIFEST.MF` (jar) or `META-INF/mozilla.rsa` (xpi).
 * - OpenDocument (odt, ods, odp): a zip whose entry named `mimetype` (first, stored, as the ODF
 *   standard requires) holds the media type itself, e.g. `application/vnd.oasis.opendocument.text`.
 * - Text (text/plain, text/csv, text/markdown): file-type knows no signature in them, so
 *   content.ts's fallback decides, and it can only ever say text/plain: the declared text type
 *   (text/csv, text/markdown, or an alias such as text/x-markdown, application/csv) is kept when the
 *   bytes are text/plain; declared as nothing or application/octet-stream, they are stored as
 *   text/plain. To be text/plain the bytes must:
 *   1. not start with any signature file-type knows: `BM` (bmp), `MZ` (exe), `%PDF`, `%!` (PostScript),
 *      `ID3`, `GIF`, `II`/`MM` (TIFF), `{\rtf`, `PK\x03\x04`, … — so each sample starts with a fixed,
 *      harmless word and only what follows varies with the seed;
 *   2. be valid UTF-8 (a BOM is allowed and skipped; a character cut by the end of a partial
 *      sample is allowed, but these samples are complete);
 *   3. contain no control characters other than tab, line feed, form feed, carriage return and
 *      escape (U+0000–U+0008, U+000B, U+000E–U+001A, U+001C–U+001F and U+007F mean binary);
 *   4. not start, after whitespace, with `<?xml` or `<svg` (XML or SVG), nor with one of the HTML
 *      tags of the WHATWG sniffing rules (`<!doctype html`, `<html`, `<script`, `<p`, `<b`, `<a`,
 *      `<!--`, … followed by a space or `>`): those are application/xml, image/svg+xml, text/html.
 */

/** The types the server accepts by default: a sample of each (BUILDERS must name them all, or this does not compile). */
export const SAMPLE_TYPES = DEFAULT_ALLOWED_TYPES;
export type SampleType = (typeof SAMPLE_TYPES)[number];

/** A small deterministic generator (mulberry32): the "random" bytes of a seed. */
function prng(seed: number): () => number {
  let state = (seed ^ 0x9e3779b9) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const randomBytesOf = (random: () => number, length: number): Buffer =>
  Buffer.from(Array.from({ length }, () => Math.floor(random() * 256)));

/** A token that differs from seed to seed, for the text inside documents. */
const tokenOf = (seed: number): string => randomBytesOf(prng(seed), 8).toString('hex');

const u16 = (value: number): Buffer => {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16LE(value);
  return bytes;
};
const u16be = (value: number): Buffer => {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value);
  return bytes;
};
const u32 = (value: number): Buffer => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value >>> 0);
  return bytes;
};
const u32be = (value: number): Buffer => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0);
  return bytes;
};

// --- Images -----------------------------------------------------------------------------------

/** A PNG chunk: length, type, data, and the CRC-32 of type and data. */
function pngChunk(type: string, data: Buffer): Buffer {
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  return Buffer.concat([u32be(data.length), typeAndData, u32be(crc32(typeAndData))]);
}

/** An 8×8 8-bit RGB PNG of seeded pixels, with a tEXt comment naming the seed. */
function samplePng(seed: number): Buffer {
  const size = 8;
  const random = prng(seed);
  const header = Buffer.concat([u32be(size), u32be(size), Buffer.from([8, 2, 0, 0, 0])]);
  // Each row: filter type 0 (none), then three bytes a pixel.
  const rows = Array.from({ length: size }, () => Buffer.concat([Buffer.from([0]), randomBytesOf(random, size * 3)]));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('tEXt', Buffer.from(`Comment\0tasks-api sample ${seed}`, 'latin1')),
    pngChunk('IDAT', deflateSync(Buffer.concat(rows))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A JPEG marker segment: the marker, then a length that counts itself and the payload. */
const jpegSegment = (marker: number, payload: Buffer): Buffer =>
  Buffer.concat([Buffer.from([0xff, marker]), u16be(payload.length + 2), payload]);

/**
 * A baseline JPEG (JFIF) of one 8×8 grey block, its level set by the seed: a quantisation table of
 * ones, Huffman tables of one code each (`0`: the DC category of the block, and end-of-block for
 * AC), a comment naming the seed, and a scan of a few bits (DC code, DC value bits, EOB).
 */
function sampleJpeg(seed: number): Buffer {
  const grey = 16 + ((((seed * 37) % 224) + 224) % 224);
  // The DC coefficient of a flat block is 8 × (level − 128) before quantisation (by 1, here).
  const dc = 8 * (grey - 128);
  const category = dc === 0 ? 0 : Math.floor(Math.log2(Math.abs(dc))) + 1;
  const valueBits = dc >= 0 ? dc : dc + (1 << category) - 1;
  let bits = '0' + (category === 0 ? '' : valueBits.toString(2).padStart(category, '0')) + '0';
  bits = bits.padEnd(Math.ceil(bits.length / 8) * 8, '1');
  const scan: number[] = [];
  for (let i = 0; i < bits.length; i += 8) {
    const byte = parseInt(bits.slice(i, i + 8), 2);
    scan.push(byte);
    if (byte === 0xff) scan.push(0x00); // byte stuffing
  }
  const oneCodeTable = (tableClass: number, symbol: number) =>
    Buffer.concat([
      Buffer.from([tableClass]),
      Buffer.from([1, ...new Array<number>(15).fill(0)]),
      Buffer.from([symbol]),
    ]);
  return Buffer.concat([
    Buffer.from([0xff, 0xd8]),
    jpegSegment(0xe0, Buffer.from([0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])),
    jpegSegment(0xfe, Buffer.from(`tasks-api sample ${seed}`, 'latin1')),
    jpegSegment(0xdb, Buffer.concat([Buffer.from([0]), Buffer.alloc(64, 1)])),
    // SOF0: 8-bit samples, 8 lines of 8, one component (id 1, 1×1 sampling, quantisation table 0).
    jpegSegment(0xc0, Buffer.from([8, 0, 8, 0, 8, 1, 1, 0x11, 0])),
    jpegSegment(0xc4, oneCodeTable(0x00, category)),
    jpegSegment(0xc4, oneCodeTable(0x10, 0x00)),
    // SOS: component 1 with DC and AC tables 0, spectral selection 0–63, no approximation.
    jpegSegment(0xda, Buffer.from([1, 1, 0x00, 0, 63, 0])),
    Buffer.from(scan),
    Buffer.from([0xff, 0xd9]),
  ]);
}

/**
 * A 4×4 GIF89a of four seeded colours, with a comment extension naming the seed. Its LZW data sends
 * a clear code before every pixel, so codes stay 3 bits wide and no dictionary is needed.
 */
function sampleGif(seed: number): Buffer {
  const random = prng(seed);
  const width = 4;
  const height = 4;
  const clear = 4;
  const end = 5;
  const codes: number[] = [];
  for (let i = 0; i < width * height; i++) codes.push(clear, Math.floor(random() * 4));
  codes.push(end);
  const lzw: number[] = [];
  let accumulator = 0;
  let count = 0;
  for (const code of codes) {
    accumulator |= code << count;
    count += 3;
    while (count >= 8) {
      lzw.push(accumulator & 0xff);
      accumulator >>= 8;
      count -= 8;
    }
  }
  if (count > 0) lzw.push(accumulator & 0xff);
  const comment = Buffer.from(`tasks-api sample ${seed}`, 'latin1');
  return Buffer.concat([
    Buffer.from('GIF89a', 'latin1'),
    // Logical screen: width, height, a global colour table of 2^(1+1) entries, background 0, no aspect.
    u16(width),
    u16(height),
    Buffer.from([0x81, 0, 0]),
    randomBytesOf(random, 4 * 3),
    Buffer.from([0x21, 0xfe, comment.length]),
    comment,
    Buffer.from([0]),
    // Image descriptor: at 0,0, the full size, no local colour table.
    Buffer.from([0x2c]),
    u16(0),
    u16(0),
    u16(width),
    u16(height),
    Buffer.from([0]),
    // Image data: LZW minimum code size 2, one sub-block, the terminator.
    Buffer.from([2, lzw.length, ...lzw, 0]),
    Buffer.from([0x3b]),
  ]);
}

/** A RIFF chunk, padded to an even length. */
function riffChunk(type: string, data: Buffer): Buffer {
  const padding = data.length % 2 === 1 ? Buffer.alloc(1) : Buffer.alloc(0);
  return Buffer.concat([Buffer.from(type, 'latin1'), u32(data.length), data, padding]);
}

/** The VP8L (lossless) bitstream of a 1×1 image with alpha: the widely used WebP feature-detection image. */
const VP8L_1X1 = Buffer.from('2f00000010071011118888fe07', 'hex');

/** An extended-format WebP: VP8X (alpha and XMP flags, a 1×1 canvas), the VP8L image, an XMP packet naming the seed. */
function sampleWebp(seed: number): Buffer {
  const vp8x = Buffer.concat([Buffer.from([0x10 | 0x04, 0, 0, 0]), Buffer.from([0, 0, 0]), Buffer.from([0, 0, 0])]);
  const xmp = Buffer.from(
    `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">` +
      `<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:description="tasks-api sample ${seed} ${tokenOf(seed)}"/>` +
      `</rdf:RDF></x:xmpmeta>`,
  );
  const body = Buffer.concat([
    Buffer.from('WEBP', 'latin1'),
    riffChunk('VP8X', vp8x),
    riffChunk('VP8L', VP8L_1X1),
    riffChunk('XMP ', xmp),
  ]);
  return Buffer.concat([Buffer.from('RIFF', 'latin1'), u32(body.length), body]);
}

/**
 * A 1×1 AVIF made by libavif (the widely used feature-detection image): `ftyp` (brand avif), `meta`
 * (hdlr pict, pitm, iloc, iinf with one av01 item, iprp with ispe, pixi, av1C, colr), `mdat` with
 * the AV1 still picture.
 */
const AVIF_1X1 = Buffer.from(
  'AAAAIGZ0eXBhdmlmAAAAAGF2aWZtaWYxbWlhZk1BMUIAAADybWV0YQAAAAAAAAAoaGRscgAAAAAAAAAAcGljdAAAAAAAAAAAAAAAAGxpYmF2aWYAAAAADnBpdG0AAAAAAAEAAAAeaWxvYwAAAABEAAABAAEAAAABAAABGgAAAB0AAAAoaWluZgAAAAAAAQAAABppbmZlAgAAAAABAABhdjAxQ29sb3IAAAAAamlwcnAAAABLaXBjbwAAABRpc3BlAAAAAAAAAAEAAAABAAAAEHBpeGkAAAAAAwgICAAAAAxhdjFDgQ0MAAAAABNjb2xybmNseAACAAIAAYAAAAAXaXBtYQAAAAAAAAABAAEEAQKDBAAAACVtZGF0EgAKCBgABogQEAwgMg8f8D///8WfhwB8+ErK42A=',
  'base64',
);

/**
 * That AVIF, then a top-level `free` box with the seed and some seeded bytes: readers skip `free`
 * boxes, and one at the end moves nothing `iloc` points at.
 */
function sampleAvif(seed: number): Buffer {
  const payload = Buffer.concat([Buffer.from(`tasks-api sample ${seed} `, 'latin1'), randomBytesOf(prng(seed), 16)]);
  return Buffer.concat([AVIF_1X1, u32be(payload.length + 8), Buffer.from('free', 'latin1'), payload]);
}

// --- PDF --------------------------------------------------------------------------------------

/** A one-page PDF 1.4 saying the seed in Helvetica, with a cross-reference table whose offsets are right. */
function samplePdf(seed: number): Buffer {
  const text = `Sample PDF ${seed} ${tokenOf(seed)}`;
  const content = `BT /F1 12 Tf 20 50 Td (${text}) Tj ET\n`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
    `<< /Length ${Buffer.byteLength(content, 'latin1')} >>\nstream\n${content}endstream`,
    `<< /Title (tasks-api sample ${seed}) /Producer (tests/helpers/sample-files.ts) >>`,
  ];
  // The second line's bytes above 127 tell transfer programs the file is binary.
  let pdf = '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n';
  const offsets: number[] = [];
  objects.forEach((object, i) => {
    offsets.push(Buffer.byteLength(pdf, 'latin1'));
    pdf += `${i + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xref = Buffer.byteLength(pdf, 'latin1');
  // Each entry is exactly 20 bytes: 10-digit offset, space, 5-digit generation, space, n or f, space, LF.
  pdf += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) pdf += `${String(offset).padStart(10, '0')} 00000 n \n`;
  pdf += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(pdf, 'latin1');
}

// --- Zip-based documents ----------------------------------------------------------------------

/** 2024-01-01 00:00:00 as an MS-DOS date and time, for every entry (so a seed's bytes are fixed). */
const DOS_DATE = ((2024 - 1980) << 9) | (1 << 5) | 1;
const DOS_TIME = 0;

/**
 * A zip archive of `entries`, in order, all stored (method 0, no compression): a local file header
 * and the data for each, then the central directory, then the end-of-central-directory record.
 */
function zip(entries: ReadonlyArray<readonly [name: string, data: string | Buffer]>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of entries) {
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    const fileName = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    // Version needed 2.0; flags: bit 11 (names are UTF-8); method 0 (stored).
    const common = Buffer.concat([
      u16(20),
      u16(0x0800),
      u16(0),
      u16(DOS_TIME),
      u16(DOS_DATE),
      u32(crc),
      u32(data.length),
      u32(data.length),
      u16(fileName.length),
      u16(0),
    ]);
    const local = Buffer.concat([u32(0x04034b50), common, fileName, data]);
    // Central directory: made by version 2.0 (MS-DOS), the same fields, no comment, disk 0, no attributes, where the local header is.
    centrals.push(
      Buffer.concat([u32(0x02014b50), u16(20), common, u16(0), u16(0), u16(0), u32(0), u32(offset), fileName]),
    );
    locals.push(local);
    offset += local.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.concat([
    u32(0x06054b50),
    u16(0),
    u16(0),
    u16(entries.length),
    u16(entries.length),
    u32(directory.length),
    u32(offset),
    u16(0),
  ]);
  return Buffer.concat([...locals, directory, end]);
}

/** The XML declaration of the OpenDocument parts (the Office Open XML parts go without: it is optional, and UTF-8 is the default). */
const XML = '<?xml version="1.0" encoding="UTF-8"?>\n';
const RELS = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
const RELATIONSHIPS = 'http://schemas.openxmlformats.org/package/2006/relationships';
const OFFICE = 'application/vnd.openxmlformats-officedocument';

/** [Content_Types].xml: the defaults for .rels and .xml, then `overrides` (the main part first). */
const contentTypes = (overrides: ReadonlyArray<readonly [part: string, type: string]>): string =>
  `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
  '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>' +
  '<Default Extension="xml" ContentType="application/xml"/>' +
  overrides.map(([part, type]) => `<Override PartName="${part}" ContentType="${type}"/>`).join('') +
  '</Types>';

/** A .rels part: `relationships` as [id, type (after …/relationships/), target]. */
const rels = (relationships: ReadonlyArray<readonly [id: string, type: string, target: string]>): string =>
  `<Relationships xmlns="${RELATIONSHIPS}">` +
  relationships
    .map(([id, type, target]) => `<Relationship Id="${id}" Type="${RELS}/${type}" Target="${target}"/>`)
    .join('') +
  '</Relationships>';

/** A Word document: one paragraph. */
function sampleDocx(seed: number): Buffer {
  return zip([
    ['[Content_Types].xml', contentTypes([['/word/document.xml', `${OFFICE}.wordprocessingml.document.main+xml`]])],
    ['_rels/.rels', rels([['rId1', 'officeDocument', 'word/document.xml']])],
    [
      'word/document.xml',
      `<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>` +
        `<w:p><w:r><w:t>Sample document ${seed} ${tokenOf(seed)}</w:t></w:r></w:p>` +
        '<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body></w:document>',
    ],
  ]);
}

/** An Excel workbook: one sheet, a string and a number. */
function sampleXlsx(seed: number): Buffer {
  return zip([
    [
      '[Content_Types].xml',
      contentTypes([
        ['/xl/workbook.xml', `${OFFICE}.spreadsheetml.sheet.main+xml`],
        ['/xl/worksheets/sheet1.xml', `${OFFICE}.spreadsheetml.worksheet+xml`],
      ]),
    ],
    ['_rels/.rels', rels([['rId1', 'officeDocument', 'xl/workbook.xml']])],
    [
      'xl/workbook.xml',
      `<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="${RELS}">` +
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
    ],
    ['xl/_rels/workbook.xml.rels', rels([['rId1', 'worksheet', 'worksheets/sheet1.xml']])],
    [
      'xl/worksheets/sheet1.xml',
      `<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">` +
        `<c r="A1" t="inlineStr"><is><t>Sample ${tokenOf(seed)}</t></is></c><c r="B1"><v>${seed}</v></c>` +
        '</row></sheetData></worksheet>',
    ],
  ]);
}

const DRAWING = 'http://schemas.openxmlformats.org/drawingml/2006/main';
const PRESENTATION = 'http://schemas.openxmlformats.org/presentationml/2006/main';
/** The namespaces of a PresentationML part. */
const P_NS = `xmlns:a="${DRAWING}" xmlns:p="${PRESENTATION}"`;
/** …and of one that refers to other parts. */
const P_R_NS = `${P_NS} xmlns:r="${RELS}"`;
/** An empty shape tree. */
const SP_TREE = '<p:spTree><p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>';

/** A theme with the parts PowerPoint requires: 12 colours, fonts, three of each kind of style. */
const THEME = (() => {
  const colours = ['dk1', 'lt1', 'dk2', 'lt2', 'accent1', 'accent2', 'accent3', 'accent4', 'accent5', 'accent6']
    .map((name, i) => `<a:${name}><a:srgbClr val="${i % 2 === 0 ? '000000' : 'FFFFFF'}"/></a:${name}>`)
    .join('');
  const fonts = '<a:latin typeface="Calibri"/><a:ea typeface=""/><a:cs typeface=""/>';
  const fill = '<a:noFill/>';
  const line = `<a:ln>${fill}</a:ln>`;
  const effect = '<a:effectStyle><a:effectLst/></a:effectStyle>';
  return (
    `<a:theme xmlns:a="${DRAWING}" name="Sample"><a:themeElements>` +
    `<a:clrScheme name="Sample">${colours}<a:hlink><a:srgbClr val="0000FF"/></a:hlink><a:folHlink><a:srgbClr val="800080"/></a:folHlink></a:clrScheme>` +
    `<a:fontScheme name="Sample"><a:majorFont>${fonts}</a:majorFont><a:minorFont>${fonts}</a:minorFont></a:fontScheme>` +
    `<a:fmtScheme name="Sample"><a:fillStyleLst>${fill.repeat(3)}</a:fillStyleLst><a:lnStyleLst>${line.repeat(3)}</a:lnStyleLst>` +
    `<a:effectStyleLst>${effect.repeat(3)}</a:effectStyleLst><a:bgFillStyleLst>${fill.repeat(3)}</a:bgFillStyleLst></a:fmtScheme>` +
    '</a:themeElements></a:theme>'
  );
})();

/** A PowerPoint presentation: one slide with one text box, on a slide layout, master and theme. */
function samplePptx(seed: number): Buffer {
  const part = (name: string, type: string) => [`/ppt/${name}`, `${OFFICE}.presentationml.${type}+xml`] as const;
  return zip([
    [
      '[Content_Types].xml',
      contentTypes([
        part('presentation.xml', 'presentation.main'),
        part('slideMasters/slideMaster1.xml', 'slideMaster'),
        part('slideLayouts/slideLayout1.xml', 'slideLayout'),
        part('slides/slide1.xml', 'slide'),
        ['/ppt/theme/theme1.xml', `${OFFICE}.theme+xml`],
      ]),
    ],
    ['_rels/.rels', rels([['rId1', 'officeDocument', 'ppt/presentation.xml']])],
    [
      'ppt/presentation.xml',
      `<p:presentation ${P_R_NS}>` +
        '<p:sldMasterIdLst><p:sldMasterId id="2147483648" r:id="rId1"/></p:sldMasterIdLst>' +
        '<p:sldIdLst><p:sldId id="256" r:id="rId2"/></p:sldIdLst>' +
        '<p:sldSz cx="9144000" cy="6858000"/><p:notesSz cx="6858000" cy="9144000"/></p:presentation>',
    ],
    [
      'ppt/_rels/presentation.xml.rels',
      rels([
        ['rId1', 'slideMaster', 'slideMasters/slideMaster1.xml'],
        ['rId2', 'slide', 'slides/slide1.xml'],
        ['rId3', 'theme', 'theme/theme1.xml'],
      ]),
    ],
    [
      'ppt/slideMasters/slideMaster1.xml',
      `<p:sldMaster ${P_R_NS}><p:cSld>${SP_TREE}</p:spTree></p:cSld>` +
        '<p:clrMap bg1="lt1" tx1="dk1" bg2="lt2" tx2="dk2" accent1="accent1" accent2="accent2" accent3="accent3" ' +
        'accent4="accent4" accent5="accent5" accent6="accent6" hlink="hlink" folHlink="folHlink"/>' +
        '<p:sldLayoutIdLst><p:sldLayoutId id="2147483649" r:id="rId1"/></p:sldLayoutIdLst></p:sldMaster>',
    ],
    [
      'ppt/slideMasters/_rels/slideMaster1.xml.rels',
      rels([
        ['rId1', 'slideLayout', '../slideLayouts/slideLayout1.xml'],
        ['rId2', 'theme', '../theme/theme1.xml'],
      ]),
    ],
    [
      'ppt/slideLayouts/slideLayout1.xml',
      `<p:sldLayout ${P_NS} type="blank"><p:cSld name="Blank">${SP_TREE}</p:spTree></p:cSld>` +
        '<p:clrMapOvr><a:masterClrMapping/></p:clrMapOvr></p:sldLayout>',
    ],
    [
      'ppt/slideLayouts/_rels/slideLayout1.xml.rels',
      rels([['rId1', 'slideMaster', '../slideMasters/slideMaster1.xml']]),
    ],
    [
      'ppt/slides/slide1.xml',
      `<p:sld ${P_NS}><p:cSld>${SP_TREE}` +
        '<p:sp><p:nvSpPr><p:cNvPr id="2" name="Text"/><p:cNvSpPr txBox="1"/><p:nvPr/></p:nvSpPr>' +
        '<p:spPr><a:xfrm><a:off x="914400" y="914400"/><a:ext cx="7315200" cy="914400"/></a:xfrm>' +
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></p:spPr>' +
        `<p:txBody><a:bodyPr/><a:lstStyle/><a:p><a:r><a:t>Sample slide ${seed} ${tokenOf(seed)}</a:t></a:r></a:p></p:txBody></p:sp>` +
        '</p:spTree></p:cSld><p:clrMapOvr><a:masterClrMapping/></p:clrMapOvr></p:sld>',
    ],
    ['ppt/slides/_rels/slide1.xml.rels', rels([['rId1', 'slideLayout', '../slideLayouts/slideLayout1.xml']])],
    ['ppt/theme/theme1.xml', THEME],
  ]);
}

const ODF_NS =
  'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" ' +
  'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" ' +
  'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" ' +
  'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" ' +
  'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" ' +
  'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" ' +
  'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"';

/**
 * An OpenDocument package: `mimetype` first and stored (what file-type reads), the manifest,
 * content.xml with `body` inside office:body, and styles.xml with `masterStyles`.
 */
function odf(mimeType: string, body: string, styles = ''): Buffer {
  const manifest =
    `${XML}<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">` +
    `<manifest:file-entry manifest:full-path="/" manifest:version="1.2" manifest:media-type="${mimeType}"/>` +
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>' +
    '<manifest:file-entry manifest:full-path="styles.xml" manifest:media-type="text/xml"/>' +
    '</manifest:manifest>';
  return zip([
    ['mimetype', mimeType],
    ['META-INF/manifest.xml', manifest],
    [
      'content.xml',
      `${XML}<office:document-content ${ODF_NS} office:version="1.2"><office:body>${body}</office:body></office:document-content>`,
    ],
    ['styles.xml', `${XML}<office:document-styles ${ODF_NS} office:version="1.2">${styles}</office:document-styles>`],
  ]);
}

const sampleOdt = (seed: number): Buffer =>
  odf(
    'application/vnd.oasis.opendocument.text',
    `<office:text><text:p>Sample document ${seed} ${tokenOf(seed)}</text:p></office:text>`,
  );

const sampleOds = (seed: number): Buffer =>
  odf(
    'application/vnd.oasis.opendocument.spreadsheet',
    '<office:spreadsheet><table:table table:name="Sheet1"><table:table-row>' +
      `<table:table-cell office:value-type="string"><text:p>Sample ${tokenOf(seed)}</text:p></table:table-cell>` +
      `<table:table-cell office:value-type="float" office:value="${seed}"><text:p>${seed}</text:p></table:table-cell>` +
      '</table:table-row></table:table></office:spreadsheet>',
  );

const sampleOdp = (seed: number): Buffer =>
  odf(
    'application/vnd.oasis.opendocument.presentation',
    '<office:presentation><draw:page draw:name="page1" draw:master-page-name="Default">' +
      '<draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" svg:height="3cm"><draw:text-box>' +
      `<text:p>Sample slide ${seed} ${tokenOf(seed)}</text:p></draw:text-box></draw:frame>` +
      '</draw:page></office:presentation>',
    '<office:automatic-styles><style:page-layout style:name="PM1">' +
      '<style:page-layout-properties fo:page-width="28cm" fo:page-height="15.75cm"/></style:page-layout>' +
      '</office:automatic-styles><office:master-styles>' +
      '<style:master-page style:name="Default" style:page-layout-name="PM1"/></office:master-styles>',
  );

// --- Text -------------------------------------------------------------------------------------

// Each starts with a fixed word (no file-type signature), is UTF-8 with only tabs, CR and LF for
// controls, and holds no markup at its start: see the rules at the top.
const sampleText = (seed: number): Buffer =>
  Buffer.from(`Sample text ${seed}\nGrüße, 世界 ✓\ttoken ${tokenOf(seed)}\n`, 'utf8');

const sampleCsv = (seed: number): Buffer =>
  Buffer.from(
    `id,title,done,token\r\n1,"Sample row ${seed}, quoted",false,${tokenOf(seed)}\r\n2,Grüße,true,${seed}\r\n`,
    'utf8',
  );

const sampleMarkdown = (seed: number): Buffer =>
  Buffer.from(
    `# Sample notes ${seed}\n\n- [ ] first item\n- **bold**, _emphasis_ and \`token ${tokenOf(seed)}\`\n\n` +
      '| a | b |\n|---|---|\n| 1 | 2 |\n',
    'utf8',
  );

const BUILDERS: Record<SampleType, (seed: number) => Buffer> = {
  'image/png': samplePng,
  'image/jpeg': sampleJpeg,
  'image/gif': sampleGif,
  'image/webp': sampleWebp,
  'image/avif': sampleAvif,
  'application/pdf': samplePdf,
  'text/plain': sampleText,
  'text/csv': sampleCsv,
  'text/markdown': sampleMarkdown,
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': sampleDocx,
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': sampleXlsx,
  'application/vnd.openxmlformats-officedocument.presentationml.presentation': samplePptx,
  'application/vnd.oasis.opendocument.text': sampleOdt,
  'application/vnd.oasis.opendocument.spreadsheet': sampleOds,
  'application/vnd.oasis.opendocument.presentation': sampleOdp,
};

/**
 * A small real file of `mediaType` (one of SAMPLE_TYPES; anything else throws). Different seeds
 * give different bytes; the same seed, the same bytes.
 */
export function sampleFile(mediaType: string, seed = 0): Buffer {
  if (!Object.hasOwn(BUILDERS, mediaType)) throw new Error(`sampleFile: no sample of ${mediaType}`);
  return BUILDERS[mediaType as SampleType](seed);
}
