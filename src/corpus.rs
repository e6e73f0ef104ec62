//! Text corpora: loading user files and directories, the bundled WordNet
//! corpus, and the converter that builds the bundled corpus from a WordNet
//! installation.
//!
//! Every example's text is stored *normalized* (see [`normalize`]): lowercased
//! and split into word and punctuation tokens joined by single spaces. This is
//! exactly what the word-level vocabulary in [`crate::vocab`] sees, so a model
//! only ever trains on tokens its vocabulary can represent.
//!
//! # Input formats
//!
//! * A **file** holds one example per line, either plain text or
//!   `label<TAB>text` (TSV). The format is decided per line: a line with a tab
//!   is labelled by whatever precedes the first tab. Files may be gzipped
//!   (recognised by a `.gz` extension or by the gzip magic bytes). A single
//!   file is split into train/valid/test with [`split_of`].
//! * A **directory** holds one file per split, named `train`, `valid` and
//!   `test` with a `.tsv` or `.txt` extension, optionally followed by `.gz`.
//! * The name **`wordnet`** selects the corpus bundled into the binary: about
//!   135k WordNet 3.0 definitions and example sentences labelled with their
//!   lexicographer file (`noun.animal`, `verb.motion`, ...).
//!
//! Unusable lines (empty, not UTF-8, too few or too many tokens) are skipped
//! and counted in [`SkipCounts`]; they are never an error, because real-world
//! corpora are messy and one bad line should not stop a training run.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The TSV label, if the line had one.
    pub label: Option<String>,
    /// The normalized text: tokens joined by single spaces (see [`normalize`]).
    pub text: String,
}

/// One of the three corpus splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    /// All splits, in the order used for per-split arrays.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// The canonical lowercase name, also the stem of a split's file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    /// Position in [`Split::ALL`], for indexing per-split arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSplitError(String);

impl fmt::Display for ParseSplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown split {:?} (expected train, valid or test)",
            self.0
        )
    }
}

impl std::error::Error for ParseSplitError {}

impl FromStr for Split {
    type Err = ParseSplitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            // Accept the names other tools use for the held-out split.
            "valid" | "validation" | "dev" => Ok(Split::Valid),
            "test" => Ok(Split::Test),
            _ => Err(ParseSplitError(s.to_owned())),
        }
    }
}

/// How many input lines were skipped, by reason.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct SkipCounts {
    /// Blank lines (or a label with no text).
    pub empty: usize,
    /// Lines that are not valid UTF-8.
    pub non_utf8: usize,
    /// Lines with fewer than [`LoadOptions::min_words`] tokens.
    pub too_short: usize,
    /// Lines with more than [`LoadOptions::max_words`] tokens.
    pub too_long: usize,
    /// A file's first line that is a TSV header (`label<TAB>text`, see [`is_tsv_header`]).
    pub header: usize,
    /// Read, not skipped: lines of a `.txt` file with a tab, read as `label<TAB>text` (noted,
    /// since a plain-text file rarely means its tabs as labels).
    pub txt_tabs: usize,
    /// Read, not skipped: lines with more than two tab-separated columns, whose columns after
    /// the first were all read as the text (noted).
    pub extra_columns: usize,
}

impl SkipCounts {
    /// Total number of skipped lines.
    pub fn total(&self) -> usize {
        self.empty + self.non_utf8 + self.too_short + self.too_long + self.header
    }

    /// A one-line summary such as `skipped 3 lines: 1 empty, 2 non-UTF-8`,
    /// or `None` when nothing was skipped.
    pub fn message(&self) -> Option<String> {
        let total = self.total();
        let mut out = Vec::new();
        if total > 0 {
            let parts: Vec<String> = [
                (self.empty, "empty"),
                (self.non_utf8, "non-UTF-8"),
                (self.too_short, "too short"),
                (self.too_long, "too long"),
                (self.header, "a TSV header"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            let noun = if total == 1 { "line" } else { "lines" };
            out.push(format!("skipped {total} {noun}: {}", parts.join(", ")));
        }
        if self.txt_tabs > 0 {
            out.push(format!(
                "{} line{} of a .txt file had a tab and {} read as label<TAB>text",
                self.txt_tabs,
                if self.txt_tabs == 1 { "" } else { "s" },
                if self.txt_tabs == 1 { "was" } else { "were" }
            ));
        }
        if self.extra_columns > 0 {
            out.push(format!(
                "{} line{} had more than two tab-separated columns: everything after the first tab was read as the text",
                self.extra_columns,
                if self.extra_columns == 1 { "" } else { "s" }
            ));
        }
        (!out.is_empty()).then(|| out.join("; "))
    }

    fn record(&mut self, skip: Skip) {
        match skip {
            Skip::Empty => self.empty += 1,
            Skip::NonUtf8 => self.non_utf8 += 1,
            Skip::TooShort => self.too_short += 1,
            Skip::TooLong => self.too_long += 1,
        }
    }
}

impl fmt::Display for SkipCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(message) => f.write_str(&message),
            None => f.write_str("no lines skipped"),
        }
    }
}

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Empty,
    NonUtf8,
    TooShort,
    TooLong,
}

/// Filters applied while loading a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Lines with fewer tokens (after [`normalize`]) are skipped.
    pub min_words: usize,
    /// Lines with more tokens (after [`normalize`]) are skipped.
    pub max_words: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            min_words: 1,
            max_words: 60,
        }
    }
}

/// A loaded corpus, already divided into splits.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// `wordnet` for the bundled corpus, else the file or directory name.
    pub name: String,
    /// SHA-256 (hex) of the bytes read, after gzip decompression so that
    /// recompressing a corpus does not change its identity. For a single file
    /// this equals `sha256sum` of the uncompressed file; for a directory each
    /// split's bytes are followed by a small trailer naming the split and its
    /// length, so moving lines between splits changes the hash.
    pub hash: String,
    pub train: Vec<Example>,
    pub valid: Vec<Example>,
    pub test: Vec<Example>,
    /// Lines skipped across all splits.
    pub skipped: SkipCounts,
}

// The bundled corpus is generated by `convert_wordnet` and embedded at build
// time, so the binary works without network access or a WordNet install.
const BUNDLED_WORDNET: [(Split, &[u8]); 3] = [
    (
        Split::Train,
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/wordnet/train.tsv.gz"
        )),
    ),
    (
        Split::Valid,
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/wordnet/valid.tsv.gz"
        )),
    ),
    (
        Split::Test,
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/wordnet/test.tsv.gz"
        )),
    ),
];

/// The spec that selects the bundled corpus in [`Corpus::load`].
const BUNDLED_NAME: &str = "wordnet";

impl Corpus {
    /// Loads a corpus: `"wordnet"` selects the bundled corpus (write
    /// `./wordnet` for a local path of that name); anything else is a path to
    /// a corpus file or directory (see the module docs for the formats).
    pub fn load(spec: &str, opts: &LoadOptions) -> Result<Corpus> {
        ensure!(
            opts.min_words <= opts.max_words,
            "min_words ({}) is larger than max_words ({})",
            opts.min_words,
            opts.max_words
        );
        if spec == BUNDLED_NAME {
            return Self::load_bundled(opts);
        }
        let path = Path::new(spec);
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bail!("corpus path {} does not exist", path.display())
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read corpus path {}", path.display()))
            }
        };
        if !meta.is_dir() && !meta.is_file() {
            // A device or pipe (`/dev/zero`) could be endless.
            bail!(
                "corpus path {} is neither a regular file nor a directory",
                path.display()
            );
        }
        let name = corpus_name(path);
        let mut loader = Loader::new(opts);
        if meta.is_dir() {
            for split in Split::ALL {
                let file = split_file(path, split)?;
                let reader = open_text(&file)?;
                loader.read(reader, &file.display().to_string(), Some(split))?;
            }
        } else {
            loader.read(open_text(path)?, &path.display().to_string(), None)?;
        }
        loader.finish(name)
    }

    /// A directory corpus held in memory: the bytes of its train, valid and test files, read
    /// exactly as [`Corpus::load`] reads a directory with those files (same examples, same
    /// hash).
    pub fn from_split_bytes(name: &str, splits: [&[u8]; 3], opts: &LoadOptions) -> Result<Corpus> {
        let mut loader = Loader::new(opts);
        for (split, bytes) in Split::ALL.into_iter().zip(splits) {
            loader.read(bytes, &format!("{name} {split}"), Some(split))?;
        }
        loader.finish(name.to_owned())
    }

    /// The bundled WordNet corpus with default [`LoadOptions`].
    pub fn bundled_wordnet() -> Result<Corpus> {
        Self::load_bundled(&LoadOptions::default())
    }

    fn load_bundled(opts: &LoadOptions) -> Result<Corpus> {
        let mut loader = Loader::new(opts);
        for (split, bytes) in BUNDLED_WORDNET {
            let source = format!("bundled {BUNDLED_NAME} {split}.tsv.gz");
            let reader =
                maybe_gunzip(bytes, true).with_context(|| format!("cannot decompress {source}"))?;
            loader.read(reader, &source, Some(split))?;
        }
        loader.finish(BUNDLED_NAME.to_owned())
    }

    /// The examples of one split.
    pub fn split(&self, s: Split) -> &[Example] {
        match s {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    /// Sorted, de-duplicated labels over all splits.
    pub fn labels(&self) -> Vec<String> {
        let labels: BTreeSet<&str> = Split::ALL
            .iter()
            .flat_map(|&s| self.split(s))
            .filter_map(|e| e.label.as_deref())
            .collect();
        labels.into_iter().map(str::to_owned).collect()
    }
}

/// The display name of a corpus path: its last component. `.` or `..` have
/// none, so fall back to the canonical path's name and then to the path text.
fn corpus_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            path.canonicalize()
                .ok()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| path.display().to_string())
}

/// Extensions a split file of a corpus directory may have.
const SPLIT_EXTENSIONS: [&str; 4] = ["tsv", "tsv.gz", "txt", "txt.gz"];

/// Every file name a corpus directory's split may have (`train.tsv` … `test.txt.gz`).
pub fn split_file_names() -> Vec<String> {
    Split::ALL
        .iter()
        .flat_map(|s| SPLIT_EXTENSIONS.iter().map(move |ext| format!("{s}.{ext}")))
        .collect()
}

/// Finds the one file holding `split` in a corpus directory.
fn split_file(dir: &Path, split: Split) -> Result<PathBuf> {
    let candidates: Vec<String> = SPLIT_EXTENSIONS
        .iter()
        .map(|ext| format!("{split}.{ext}"))
        .collect();
    let found: Vec<PathBuf> = candidates
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "corpus directory {} has no {split} file (expected one of {})",
            dir.display(),
            candidates.join(", ")
        ),
        // Refuse to guess: silently preferring one file would hide a mistake.
        many => bail!(
            "corpus directory {} has several {split} files: {}",
            dir.display(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a corpus file, transparently decompressing gzip.
fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file =
        File::open(path).with_context(|| format!("cannot open corpus file {}", path.display()))?;
    let is_gz = path.extension().is_some_and(|ext| ext == "gz");
    maybe_gunzip(BufReader::new(file), is_gz)
        .with_context(|| format!("cannot read corpus file {}", path.display()))
}

/// Wraps `reader` in a gzip decoder when told to or when the data starts with
/// the gzip magic bytes (so a compressed file without `.gz` still works).
fn maybe_gunzip<'a>(
    mut reader: impl BufRead + 'a,
    is_gz: bool,
) -> io::Result<Box<dyn BufRead + 'a>> {
    let has_magic = reader.fill_buf()?.starts_with(&GZIP_MAGIC);
    Ok(if is_gz || has_magic {
        // Multi-member streams are what `cat a.gz b.gz` produces.
        Box::new(BufReader::new(MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    })
}

/// Longest line kept, in bytes (before normalising); longer lines are skipped as too long.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most bytes a corpus may hold, after decompression, over all its files.
pub const MAX_CORPUS_BYTES: u64 = 2 << 30;

/// Reads one line (with its `\n`) into `buf`, hashing every byte, but keeps at most
/// [`MAX_LINE_BYTES`] of it. Returns the bytes consumed and whether the whole line was kept.
fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    hasher: &mut Sha256,
) -> io::Result<(u64, bool)> {
    let mut consumed = 0u64;
    let mut whole = true;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, whole));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        hasher.update(&chunk[..take]);
        if whole {
            if buf.len() + take <= MAX_LINE_BYTES {
                buf.extend_from_slice(&chunk[..take]);
            } else {
                whole = false;
                buf.clear();
            }
        }
        reader.consume(take);
        consumed += take as u64;
        if done {
            return Ok((consumed, whole));
        }
    }
}

/// Accumulates examples, skip counts and the hash while sources are read.
struct Loader<'o> {
    opts: &'o LoadOptions,
    /// Bytes read so far over every source (bounded by [`MAX_CORPUS_BYTES`]).
    total_bytes: u64,
    hasher: Sha256,
    skipped: SkipCounts,
    splits: [Vec<Example>; 3],
}

impl<'o> Loader<'o> {
    fn new(opts: &'o LoadOptions) -> Self {
        Loader {
            opts,
            total_bytes: 0,
            hasher: Sha256::new(),
            skipped: SkipCounts::default(),
            splits: Default::default(),
        }
    }

    /// Reads every line of `reader`. `split` is the split all its lines belong
    /// to, or `None` to assign each line with [`split_of`].
    fn read(&mut self, mut reader: impl BufRead, source: &str, split: Option<Split>) -> Result<()> {
        let mut buf = Vec::new();
        let mut bytes_read = 0u64;
        let is_txt = source.ends_with(".txt") || source.ends_with(".txt.gz");
        for line_no in 1u64.. {
            buf.clear();
            // At most MAX_LINE_BYTES of a line are kept; the rest is hashed and skipped, so a
            // single endless line (a small gzip can inflate to gigabytes) costs no memory.
            let (n, whole) = read_line_bounded(&mut reader, &mut buf, &mut self.hasher)
                .with_context(|| format!("error reading {source} line {line_no}"))?;
            if n == 0 {
                break;
            }
            bytes_read += n;
            self.total_bytes += n;
            if self.total_bytes > MAX_CORPUS_BYTES {
                bail!(
                    "{source}: the corpus is larger than {} MB (after decompression); split it or take a sample",
                    MAX_CORPUS_BYTES >> 20
                );
            }
            if !whole {
                self.skipped.record(Skip::TooLong);
                continue;
            }

            let mut line = buf.as_slice();
            line = line.strip_suffix(b"\n").unwrap_or(line);
            line = line.strip_suffix(b"\r").unwrap_or(line);
            if line_no == 1 {
                // Editors on Windows like to start files with a byte-order
                // mark, which would otherwise become a punctuation token.
                line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
            }
            if line.contains(&b'\t') {
                if line_no == 1 && is_tsv_header(line) {
                    self.skipped.header += 1;
                    continue;
                }
                if is_txt {
                    self.skipped.txt_tabs += 1;
                }
                if line.iter().filter(|&&b| b == b'\t').count() > 1 {
                    self.skipped.extra_columns += 1;
                }
            }
            match parse_line(line, self.opts) {
                Ok(example) => {
                    let split = split.unwrap_or_else(|| split_of_normalized(&example.text));
                    self.splits[split.index()].push(example);
                }
                Err(skip) => self.skipped.record(skip),
            }
        }
        if let Some(split) = split {
            self.hasher.update(format!("\0{split}:{bytes_read}\0"));
        }
        Ok(())
    }

    fn finish(self, name: String) -> Result<Corpus> {
        let [train, valid, test] = self.splits;
        if train.is_empty() {
            // Tiny single-file corpora can hash every line out of train, so
            // say where the usable lines went as well as what was skipped.
            let elsewhere = valid.len() + test.len();
            let why = match (self.skipped.message(), elsewhere) {
                (Some(skipped), 0) => skipped,
                (Some(skipped), n) => {
                    format!("{skipped}; the valid and test splits have {n} usable lines")
                }
                (None, 0) => "it is empty".to_owned(),
                (None, n) => format!("the valid and test splits have {n} usable lines"),
            };
            bail!("corpus {name} has no usable lines in its train split ({why})");
        }
        Ok(Corpus {
            name,
            hash: hex(&self.hasher.finalize()),
            train,
            valid,
            test,
            skipped: self.skipped,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// First-column names of a TSV header line.
const HEADER_LABELS: [&str; 9] = [
    "label",
    "labels",
    "class",
    "category",
    "categories",
    "tag",
    "tags",
    "target",
    "y",
];
/// Second-column names of a TSV header line.
const HEADER_TEXTS: [&str; 9] = [
    "text",
    "texts",
    "sentence",
    "sentences",
    "document",
    "doc",
    "content",
    "body",
    "x",
];

/// Whether `line` (a file's first line) is a TSV header such as `label<TAB>text`: its first
/// column is a column name like `label` / `class` / `category` and its second one like
/// `text` / `sentence` / `document` (case and surrounding spaces ignored). Such a line is
/// skipped (and counted) rather than read as a training sentence.
pub fn is_tsv_header(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut columns = line.split('\t').map(|c| c.trim().to_lowercase());
    match (columns.next(), columns.next()) {
        (Some(label), Some(text)) => {
            HEADER_LABELS.contains(&label.as_str()) && HEADER_TEXTS.contains(&text.as_str())
        }
        _ => false,
    }
}

/// Turns one raw line (without its line ending) into an example.
fn parse_line(line: &[u8], opts: &LoadOptions) -> std::result::Result<Example, Skip> {
    let line = std::str::from_utf8(line).map_err(|_| Skip::NonUtf8)?;
    let (label, text) = match line.split_once('\t') {
        Some((label, text)) => {
            let label = label.trim();
            ((!label.is_empty()).then(|| label.to_owned()), text)
        }
        None => (None, line),
    };
    if text.trim().is_empty() {
        return Err(Skip::Empty);
    }
    let text = normalize(text);
    let words = text.split(' ').count();
    if words < opts.min_words {
        return Err(Skip::TooShort);
    }
    if words > opts.max_words {
        return Err(Skip::TooLong);
    }
    Ok(Example { label, text })
}

/// Lowercases `text` and splits it into tokens matching `\w+` or `[^\w\s]+`,
/// joined by single spaces: `"Don't stop!"` becomes `"don ' t stop !"`.
///
/// This is the tokenization of a `tokenizers` pipeline with the `Lowercase`
/// normalizer and the `Whitespace` pre-tokenizer, which [`crate::vocab`]
/// relies on to skip the tokenizer on its hot path. ASCII text (nearly all
/// input) takes a hand-written fast path; anything else is delegated to the
/// `Whitespace` pre-tokenizer itself, so the Unicode definitions of `\w` and
/// `\s` match exactly rather than approximately.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        normalize_ascii(text)
    } else {
        normalize_unicode(text)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Space,
    Word,
    Punct,
}

fn ascii_class(b: u8) -> CharClass {
    match b {
        // Unicode White_Space within ASCII: \t \n \v \f \r and space. (Not
        // `u8::is_ascii_whitespace`, which leaves out \v.)
        b'\t'..=b'\r' | b' ' => CharClass::Space,
        b'_' => CharClass::Word,
        _ if b.is_ascii_alphanumeric() => CharClass::Word,
        // Everything else, control characters included, is `[^\w\s]`.
        _ => CharClass::Punct,
    }
}

fn normalize_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut prev = CharClass::Space;
    for b in text.bytes() {
        let class = ascii_class(b);
        if class == CharClass::Space {
            prev = class;
            continue;
        }
        // A token is a maximal run of one class, so a class change (or the
        // end of a whitespace run) starts a new one.
        if class != prev && !out.is_empty() {
            out.push(' ');
        }
        out.push(char::from(b.to_ascii_lowercase()));
        prev = class;
    }
    out
}

fn normalize_unicode(text: &str) -> String {
    // Per-character lowercasing, as the `Lowercase` normalizer does; unlike
    // `str::to_lowercase` it has no special case for a word-final sigma.
    let lowered: String = text.chars().flat_map(char::to_lowercase).collect();
    let mut pretokenized = PreTokenizedString::from(lowered.as_str());
    Whitespace
        .pre_tokenize(&mut pretokenized)
        .expect("the Whitespace pre-tokenizer only runs an infallible regex split");
    let tokens: Vec<&str> = pretokenized
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(token, _, _)| token)
        .collect();
    tokens.join(" ")
}

/// The split a text belongs to, from a stable hash of its normalized form:
/// bucket `sha256(normalize(text))[..8] as big-endian u64 % 100`, with buckets
/// 0..90 train, 90..95 valid and 95..100 test.
///
/// Because the split depends only on the text, duplicate lines always land in
/// the same split and cannot leak from train into valid or test, and the
/// assignment is the same on every machine and every run.
pub fn split_of(text: &str) -> Split {
    split_of_normalized(&normalize(text))
}

fn split_of_normalized(normalized: &str) -> Split {
    let digest = Sha256::digest(normalized.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    match u64::from_be_bytes(head) % 100 {
        0..90 => Split::Train,
        90..95 => Split::Valid,
        _ => Split::Test,
    }
}

// ---------------------------------------------------------------------------
// WordNet conversion
// ---------------------------------------------------------------------------

/// The 45 lexicographer file names, indexed by `lex_filenum`, from
/// lexnames(5WN). Debian's `wordnet-base` does not ship the `lexnames` file.
const LEXNAMES: [&str; 45] = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
];

/// The data files, in the order their glosses are written out.
const WORDNET_DATA_FILES: [&str; 4] = ["data.noun", "data.verb", "data.adj", "data.adv"];

/// Gloss pieces shorter than this are mostly fragments such as `"classical"`.
const MIN_GLOSS_TOKENS: usize = 5;
/// A handful of glosses are long enumerations; keep sequences short.
const MAX_GLOSS_TOKENS: usize = 30;

/// What [`convert_wordnet`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordnetReport {
    /// Lines written per split, indexed by [`Split::index`].
    pub per_split: [usize; 3],
    /// Distinct labels (lexicographer files) written.
    pub labels: usize,
    /// Pieces dropped because an earlier piece had the same normalized text.
    pub duplicates: usize,
    /// Pieces dropped for having fewer than 5 or more than 30 tokens.
    pub out_of_range: usize,
}

impl fmt::Display for WordnetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [train, valid, test] = self.per_split;
        write!(
            f,
            "{} lines ({train} train, {valid} valid, {test} test), {} labels; \
             dropped {} duplicates and {} pieces outside {MIN_GLOSS_TOKENS}..={MAX_GLOSS_TOKENS} tokens",
            train + valid + test,
            self.labels,
            self.duplicates,
            self.out_of_range
        )
    }
}

/// Builds the bundled corpus from a WordNet 3.0 database directory (the one
/// holding `data.noun` etc.): every definition and example sentence of every
/// synset becomes a `lexname<TAB>text` line in `out_dir/{train,valid,test}.tsv.gz`,
/// and WordNet's license goes to `out_dir/LICENSE`.
///
/// Output is deterministic (fixed file order, hash-based splits, gzip headers
/// without timestamps), so rerunning it reproduces the committed assets.
pub fn convert_wordnet(wordnet_dir: &Path, out_dir: &Path) -> Result<WordnetReport> {
    // Check the sources before touching the output: a machine without WordNet must not lose
    // the corpus it has.
    for file_name in WORDNET_DATA_FILES {
        let path = wordnet_dir.join(file_name);
        if !path.is_file() {
            bail!(
                "WordNet data file {} not found; install WordNet (Debian/Ubuntu: \
                 `apt-get install -y wordnet-base`) or pass the directory holding data.noun, \
                 data.verb, data.adj and data.adv",
                path.display()
            );
        }
    }
    let mut outputs = Vec::with_capacity(Split::ALL.len() + 1);
    for split in Split::ALL {
        outputs.push(out_dir.join(format!("{split}.tsv.gz")));
    }
    outputs.push(out_dir.join("LICENSE"));
    // Check every target before writing any: only files this converter wrote are replaced
    // (a `--out` pointed at a project directory must not lose its own LICENSE).
    for path in &outputs {
        check_wordnet_output(path)?;
    }
    // The temporaries are written inside `out_dir`; the directories made for them are removed
    // again when the sources turn out to be unusable (only those this run made, only if empty).
    let created = create_dirs(out_dir)
        .with_context(|| format!("cannot create output directory {}", out_dir.display()))?;
    match stage_wordnet(wordnet_dir, &outputs) {
        // Every new file is complete; only now do they replace the old ones.
        Ok((staged, report)) => {
            crate::checkpoint::commit_all(staged)?;
            Ok(report)
        }
        // The staged temporaries are gone (dropped uncommitted); so are the directories made.
        Err(e) => {
            remove_empty_dirs(&created);
            Err(e)
        }
    }
}

/// The files of [`convert_wordnet`] staged as every save stages its files
/// ([`crate::checkpoint::Staged`]: the temporaries of an interrupted run removed, a replaced
/// file's permissions kept), written and synced, not yet renamed into place.
fn stage_wordnet(
    wordnet_dir: &Path,
    outputs: &[PathBuf],
) -> Result<(Vec<crate::checkpoint::Staged>, WordnetReport)> {
    let mut staged = Vec::with_capacity(outputs.len());
    let mut files = Vec::with_capacity(outputs.len());
    for path in outputs {
        let (s, file) = crate::checkpoint::Staged::create(path)?;
        files.push((s.temporary().to_path_buf(), file));
        staged.push(s);
    }
    let report = write_wordnet(wordnet_dir, files)?;
    Ok((staged, report))
}

/// Creates `dir` with its missing parents, as `fs::create_dir_all` does; returns the
/// directories this call created, outermost first.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
        .collect();
    let mut created = Vec::new();
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => created.push(d.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                remove_empty_dirs(&created);
                return Err(e);
            }
        }
    }
    // What exists already must be a directory (the error `create_dir_all` gives otherwise).
    if let Err(e) = fs::create_dir_all(dir) {
        remove_empty_dirs(&created);
        return Err(e);
    }
    Ok(created)
}

/// Removes the directories [`create_dirs`] made, innermost first, while they are empty.
fn remove_empty_dirs(created: &[PathBuf]) {
    for d in created.iter().rev() {
        if fs::remove_dir(d).is_err() {
            break;
        }
    }
}

/// Writes the three split files and the licence of [`convert_wordnet`] to `files` (train,
/// valid, test, LICENSE: each the path its errors name and the open file), and syncs them.
fn write_wordnet(wordnet_dir: &Path, mut files: Vec<(PathBuf, File)>) -> Result<WordnetReport> {
    ensure!(
        files.len() == Split::ALL.len() + 1,
        "three splits and a licence"
    );
    let (license_path, mut license_file) = files.pop().expect("checked above");
    let mut writers: Vec<GzWriter> = files
        .into_iter()
        .map(|(path, file)| GzWriter::new(path, file))
        .collect();
    let mut report = WordnetReport::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut labels: HashSet<&'static str> = HashSet::new();
    let mut license: Option<Vec<String>> = None;

    for file_name in WORDNET_DATA_FILES {
        let path = wordnet_dir.join(file_name);
        let file = File::open(&path)
            .with_context(|| format!("cannot open WordNet data file {}", path.display()))?;
        let mut header = Vec::new();
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        for line_no in 1u64.. {
            let at = || format!("{}:{line_no}", path.display());
            // Lines are read up to MAX_LINE_BYTES (WordNet's longest is a few kilobytes): a
            // file of one endless line is an error after a megabyte, never held whole.
            buf.clear();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("error reading {}", at()))?;
            if n == 0 {
                break;
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            } else if n > MAX_LINE_BYTES {
                bail!(
                    "{}: a line longer than {} MiB; not a WordNet data file",
                    at(),
                    MAX_LINE_BYTES >> 20
                );
            }
            let line = std::str::from_utf8(&buf)
                .with_context(|| format!("error reading {}: not UTF-8", at()))?;
            // The license is repeated at the top of every data file as lines
            // of two spaces, a line number and the text.
            if let Some(rest) = line.strip_prefix("  ") {
                header.push(license_line(rest));
                continue;
            }
            let synset =
                parse_synset_line(line).with_context(|| format!("malformed synset at {}", at()))?;
            for piece in split_gloss(synset.gloss) {
                let text = normalize(&piece.text);
                let tokens = text.split(' ').count();
                if !(MIN_GLOSS_TOKENS..=MAX_GLOSS_TOKENS).contains(&tokens) {
                    report.out_of_range += 1;
                    continue;
                }
                // Many examples are shared between related synsets; keep the
                // first so no sentence appears twice.
                if seen.contains(&text) {
                    report.duplicates += 1;
                    continue;
                }
                let split = split_of_normalized(&text);
                writers[split.index()].write_line(synset.lexname, &text)?;
                report.per_split[split.index()] += 1;
                labels.insert(synset.lexname);
                seen.insert(text);
            }
        }
        license.get_or_insert(header);
    }

    for writer in writers {
        writer.finish()?;
    }
    report.labels = labels.len();

    let license = license.unwrap_or_default();
    ensure!(
        license.iter().any(|l| !l.is_empty()),
        "no license header found in the WordNet data files in {}",
        wordnet_dir.display()
    );
    let text = format!(
        "{WORDNET_LICENSE_START} by Princeton University\n\
         (https://wordnet.princeton.edu/). Each line is a definition or example\n\
         sentence from a synset gloss in data.noun, data.verb, data.adj or data.adv,\n\
         lowercased and tokenized, labelled with the synset's lexicographer file.\n\
         WordNet is distributed under the following license.\n\n{}\n",
        license.join("\n").trim_end()
    );
    license_file
        .write_all(text.as_bytes())
        .and_then(|()| license_file.sync_all())
        .with_context(|| format!("cannot write {}", license_path.display()))?;
    Ok(report)
}

/// First line of the LICENSE [`convert_wordnet`] writes: how it recognises its own file.
const WORDNET_LICENSE_START: &str = "This corpus is derived from WordNet 3.0";

/// Refuses an existing output of [`convert_wordnet`] that the converter did not write: a
/// LICENSE must start as ours does; a split must be a gzip stream that is empty or whose first
/// line is `lexname<TAB>text` (reading at most a few kilobytes); anything but a regular file
/// is refused. A missing file is fine.
fn check_wordnet_output(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot check {}", path.display())),
        Ok(meta) => meta,
    };
    if !meta.is_file() {
        bail!(
            "{} exists and is not a regular file; not replacing it (choose another --out)",
            path.display()
        );
    }
    let gz = path.extension().is_some_and(|e| e == "gz");
    let read = read_head(path, gz);
    let head = read.as_deref().unwrap_or_default();
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = std::str::from_utf8(first).unwrap_or_default();
    let ours = read.is_ok()
        && if gz {
            head.is_empty()
                || first
                    .split_once('\t')
                    .is_some_and(|(label, text)| is_lexname(label) && !text.trim().is_empty())
        } else {
            first.starts_with(WORDNET_LICENSE_START)
        };
    if !ours {
        bail!(
            "{} exists and is not a file of a WordNet corpus this command wrote; not replacing it \
             (choose another --out)",
            path.display()
        );
    }
    Ok(())
}

/// Most bytes [`read_head`] reads: enough for the first line of any file a corpus builder
/// writes.
pub(crate) const HEAD_BYTES: u64 = 4096;

/// The first [`HEAD_BYTES`] of the file at `path` (after decompression when `gz`): how the
/// corpus builders recognise a file of their own without reading a huge one whole.
pub(crate) fn read_head(path: &Path, gz: bool) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    let file = File::open(path)?;
    if gz {
        MultiGzDecoder::new(BufReader::new(file))
            .take(HEAD_BYTES)
            .read_to_end(&mut head)?;
    } else {
        file.take(HEAD_BYTES).read_to_end(&mut head)?;
    }
    Ok(head)
}

/// Whether `label` has the shape of a WordNet lexicographer file name (`noun.animal`).
fn is_lexname(label: &str) -> bool {
    label.split_once('.').is_some_and(|(pos, name)| {
        matches!(pos, "noun" | "verb" | "adj" | "adv")
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
    })
}

/// A header line without its leading line number: `"5 Permission ..."` ->
/// `"Permission ..."`.
fn license_line(rest: &str) -> String {
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.strip_prefix(' ').unwrap_or(rest).trim_end().to_owned()
}

/// A gzip-compressed output file with a timestamp-free header.
struct GzWriter {
    path: PathBuf,
    encoder: GzEncoder<BufWriter<File>>,
}

impl GzWriter {
    /// A writer into `file` (a staged temporary, [`crate::checkpoint::Staged::create`]);
    /// `path` names it in errors.
    fn new(path: PathBuf, file: File) -> GzWriter {
        GzWriter {
            path,
            encoder: GzEncoder::new(BufWriter::new(file), Compression::best()),
        }
    }

    fn write_line(&mut self, label: &str, text: &str) -> Result<()> {
        writeln!(self.encoder, "{label}\t{text}")
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn finish(self) -> Result<()> {
        let context = || format!("cannot write {}", self.path.display());
        let buffered = self.encoder.finish().with_context(context)?;
        let file = buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(context)?;
        file.sync_all().with_context(context)?;
        Ok(())
    }
}

/// The parts of a data-file line the converter uses.
#[derive(Debug, PartialEq, Eq)]
struct Synset<'a> {
    lexname: &'static str,
    gloss: &'a str,
}

/// Parses `offset lex_filenum ss_type w_cnt word lex_id... p_cnt pointers...
/// [f_cnt frames...] | gloss` (wndb(5WN)). The fields before the gloss are
/// walked rather than skipped so that a line whose ` | ` is misplaced is
/// reported instead of yielding a garbled gloss.
fn parse_synset_line(line: &str) -> Result<Synset<'_>> {
    let (head, gloss) = line
        .split_once(" | ")
        .context("missing the ' | ' that starts the gloss")?;
    let mut fields = head.split_ascii_whitespace();
    let mut next = |what: &str| {
        fields
            .next()
            .with_context(|| format!("line ends before its {what}"))
    };
    let count = |field: &str, radix: u32, what: &str| {
        usize::from_str_radix(field, radix).with_context(|| format!("bad {what} {field:?}"))
    };

    let offset = next("synset offset")?;
    ensure!(
        offset.len() == 8 && offset.bytes().all(|b| b.is_ascii_digit()),
        "bad synset offset {offset:?}"
    );
    let lex_filenum = next("lex_filenum")?;
    let lexname = lex_filenum
        .parse::<usize>()
        .ok()
        .and_then(|n| LEXNAMES.get(n).copied())
        .with_context(|| {
            format!("lex_filenum {lex_filenum:?} is not a lexicographer file number (00-44)")
        })?;
    let ss_type = next("ss_type")?;
    ensure!(
        matches!(ss_type, "n" | "v" | "a" | "s" | "r"),
        "bad ss_type {ss_type:?}"
    );
    let w_cnt = count(next("w_cnt")?, 16, "w_cnt")?;
    for _ in 0..w_cnt {
        next("word")?;
        next("lex_id")?;
    }
    let p_cnt = count(next("p_cnt")?, 10, "p_cnt")?;
    for _ in 0..p_cnt {
        for what in [
            "pointer symbol",
            "pointer offset",
            "pointer pos",
            "pointer source/target",
        ] {
            next(what)?;
        }
    }
    if ss_type == "v" {
        let f_cnt = count(next("f_cnt")?, 10, "f_cnt")?;
        for _ in 0..f_cnt {
            for what in ["frame '+'", "f_num", "w_num"] {
                next(what)?;
            }
        }
    }
    if let Some(extra) = fields.next() {
        bail!("unexpected field {extra:?} before the gloss");
    }
    Ok(Synset {
        lexname,
        gloss: gloss.trim(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlossKind {
    Definition,
    Example,
}

/// One `;`-separated part of a gloss, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GlossPiece {
    kind: GlossKind,
    text: String,
}

/// Splits a gloss such as `a domestic cat; "the cat sat; then it slept"` at
/// the semicolons outside double quotes into definitions and (quoted) example
/// sentences.
///
/// About one gloss in five thousand has unbalanced quotes (`"long-toed;
/// "five-toed"`, `the wrong side of the road"`), so quotes are classified by
/// context rather than simply toggled: a quote followed by `;` or the end
/// always closes, and a `;` followed by a quote always ends a piece. This
/// keeps one missing quote from swallowing the rest of the gloss. See
/// [`split_trailing_example`] for examples introduced by `:` or `,`.
fn split_gloss(gloss: &str) -> Vec<GlossPiece> {
    let bytes = gloss.as_bytes();
    let next_non_space = |from: usize| bytes[from..].iter().copied().find(|b| *b != b' ');
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    // Slicing at these byte positions is safe: `"` and `;` are ASCII, so they
    // never sit inside a multi-byte UTF-8 sequence.
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => {
                in_quote = match next_non_space(i + 1) {
                    None | Some(b';') => false,
                    Some(_) => !in_quote,
                }
            }
            b';' if !in_quote || next_non_space(i + 1) == Some(b'"') => {
                GlossPiece::parse_into(&gloss[start..i], &mut pieces);
                start = i + 1;
                in_quote = false;
            }
            _ => {}
        }
    }
    GlossPiece::parse_into(&gloss[start..], &mut pieces);
    pieces
}

impl GlossPiece {
    /// Classifies one `;`-separated part of a gloss, appending the pieces it
    /// holds (none if it is blank) to `pieces`.
    fn parse_into(raw: &str, pieces: &mut Vec<GlossPiece>) {
        let raw = raw.trim();
        let quotes = raw.matches('"').count();
        let mut push = |kind, text: &str| {
            let text = text.trim();
            if !text.is_empty() {
                pieces.push(GlossPiece {
                    kind,
                    text: text.to_owned(),
                });
            }
        };
        if let Some(rest) = raw.strip_prefix('"') {
            // An example runs to its closing quote; what follows is an
            // attribution such as `- Shakespeare`, dropped. An unclosed
            // example runs to the end of the piece.
            let text = rest.split_once('"').map_or(rest, |(quoted, _)| quoted);
            push(GlossKind::Example, text);
        } else if quotes == 1 && raw.ends_with('"') {
            // An example that lost its opening quote.
            push(GlossKind::Example, raw.trim_end_matches('"'));
        } else if quotes % 2 == 1 {
            // A definition with a stray quote: the quote carries no meaning.
            push(GlossKind::Definition, &raw.replace('"', ""));
        } else if let Some((definition, example)) = split_trailing_example(raw) {
            push(GlossKind::Definition, definition);
            push(GlossKind::Example, example);
        } else {
            // Balanced quotes inside a definition (`followed by "to"`) are
            // part of its text.
            push(GlossKind::Definition, raw);
        }
    }
}

/// A few dozen glosses introduce their example with `:` or `,` instead of
/// `;` (`go under, "the raft sank"`); splits such a piece into its definition
/// and example. Quotes elsewhere (`as in "carrot and stick"`) are left alone.
fn split_trailing_example(raw: &str) -> Option<(&str, &str)> {
    let body = raw.strip_suffix('"')?;
    let open = body.rfind('"')?;
    let definition = body[..open].trim_end().strip_suffix([':', ','])?;
    Some((definition, &body[open + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn write_file(path: &Path, bytes: &[u8]) {
        fs::write(path, bytes).unwrap();
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn all_examples(corpus: &Corpus) -> Vec<&Example> {
        Split::ALL.iter().flat_map(|&s| corpus.split(s)).collect()
    }

    /// What the tokenizers crate's Whitespace pre-tokenizer makes of `text`.
    fn reference_tokens(text: &str) -> String {
        let lowered: String = text.chars().flat_map(char::to_lowercase).collect();
        let mut pre = PreTokenizedString::from(lowered.as_str());
        Whitespace.pre_tokenize(&mut pre).unwrap();
        pre.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(t, _, _)| t)
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn normalize_examples() {
        let cases = [
            ("Hello, World!", "hello , world !"),
            ("Don't stop", "don ' t stop"),
            ("  spaced\tout\r\n", "spaced out"),
            ("wait...what?!", "wait ... what ?!"),
            ("snake_case and CamelCase", "snake_case and camelcase"),
            ("pi is 3.14", "pi is 3 . 14"),
            // A punctuation run is one token, quote and parenthesis alike.
            (
                "(usually followed by \"to\")",
                "( usually followed by \" to \")",
            ),
            ("", ""),
            ("   ", ""),
            ("Ünïcode ÉTÉ café", "ünïcode été café"),
            ("x²", "x ²"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input), expected, "normalize({input:?})");
        }
    }

    #[test]
    fn normalize_matches_whitespace_pre_tokenizer() {
        // Every ASCII character, on its own and between letters, exercises
        // the fast path's character classes.
        for b in 0u8..128 {
            let c = char::from(b);
            for text in [format!("{c}"), format!("a{c}b"), format!("A{c}{c}1 {c}")] {
                assert_eq!(normalize(&text), reference_tokens(&text), "{text:?}");
            }
        }
        for text in [
            "Ὀδυσσεύς ΣΟΦΟΣ",
            "straße İstanbul",
            "e\u{301}te\u{301} naïve",
            "emoji 🙂🙂 ok",
            "no\u{a0}break\u{2003}space",
            "١٢٣ arabic digits, ½ and Ⅻ",
            "日本語のテキスト。",
        ] {
            assert_eq!(normalize(text), reference_tokens(text), "{text:?}");
        }
    }

    #[test]
    fn normalize_is_idempotent() {
        for text in ["Hello, World!", "straße İstanbul ½", "a--b__c"] {
            let once = normalize(text);
            assert_eq!(normalize(&once), once);
        }
    }

    #[test]
    fn split_of_is_stable_and_roughly_90_5_5() {
        assert_eq!(split_of("Hello, World!"), split_of("hello ,world !"));
        // Pinned values: the assignment must never change between versions,
        // or old checkpoints would be evaluated on their own training data.
        // (Python: `int.from_bytes(sha256(t.encode()).digest()[:8], "big") % 100`.)
        assert_eq!(split_of("the cat sat on the mat"), Split::Train);
        assert_eq!(split_of("sentence number 17"), Split::Valid);
        assert_eq!(split_of("sentence number 7"), Split::Test);
        let mut counts = [0usize; 3];
        let n = 20_000;
        for i in 0..n {
            counts[split_of(&format!("sentence number {i}")).index()] += 1;
        }
        let share = |c: usize| c as f64 / n as f64;
        assert!((0.88..0.92).contains(&share(counts[0])), "{counts:?}");
        assert!((0.04..0.06).contains(&share(counts[1])), "{counts:?}");
        assert!((0.04..0.06).contains(&share(counts[2])), "{counts:?}");
    }

    #[test]
    fn split_names() {
        for split in Split::ALL {
            assert_eq!(split.to_string().parse::<Split>(), Ok(split));
        }
        assert_eq!("validation".parse::<Split>(), Ok(Split::Valid));
        assert_eq!("dev".parse::<Split>(), Ok(Split::Valid));
        assert_eq!("TEST".parse::<Split>(), Ok(Split::Test));
        assert!("training".parse::<Split>().is_err());
    }

    /// Many one-word-apart sentences, so every split gets some.
    fn many_lines(label: Option<&str>, n: usize) -> String {
        (0..n)
            .map(|i| match label {
                Some(l) => format!("{l}\tThe quick fox number {i} jumps.\n"),
                None => format!("The quick fox number {i} jumps.\n"),
            })
            .collect()
    }

    fn messy_tail() -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"\n   \r\n");
        bytes.extend_from_slice(b"bad \xff\xfe bytes\n");
        bytes.extend_from_slice(format!("{}\n", "word ".repeat(61)).as_bytes());
        bytes.extend_from_slice(b"noun.cat\tno newline at the end");
        bytes
    }

    #[test]
    fn tsv_file_with_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pets.tsv");
        let mut bytes = many_lines(Some("noun.animal"), 200).into_bytes();
        bytes.extend(messy_tail());
        write_file(&path, &bytes);

        let corpus = Corpus::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
        assert_eq!(corpus.name, "pets.tsv");
        assert_eq!(
            corpus.skipped,
            SkipCounts {
                empty: 2,
                non_utf8: 1,
                too_short: 0,
                too_long: 1,
                ..Default::default()
            }
        );
        assert_eq!(all_examples(&corpus).len(), 201);
        assert!(!corpus.valid.is_empty() && !corpus.test.is_empty());
        assert_eq!(corpus.labels(), ["noun.animal", "noun.cat"]);
        let last = all_examples(&corpus)
            .into_iter()
            .find(|e| e.label.as_deref() == Some("noun.cat"))
            .unwrap();
        assert_eq!(last.text, "no newline at the end");
        // A single file's hash is that of its contents.
        assert_eq!(corpus.hash, hex(&Sha256::digest(&bytes)));
        assert_eq!(
            corpus.skipped.message().unwrap(),
            "skipped 4 lines: 2 empty, 1 non-UTF-8, 1 too long"
        );
    }

    #[test]
    fn plain_file_with_bad_lines_and_min_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.txt");
        let mut bytes = many_lines(None, 50).into_bytes();
        bytes.extend_from_slice(b"too short\r\n");
        bytes.extend(messy_tail());
        write_file(&path, &bytes);

        let opts = LoadOptions {
            min_words: 3,
            max_words: 60,
        };
        let corpus = Corpus::load(path.to_str().unwrap(), &opts).unwrap();
        assert_eq!(
            corpus.skipped,
            SkipCounts {
                empty: 2,
                non_utf8: 1,
                too_short: 1,
                too_long: 1,
                // messy_tail's labelled line, in a .txt file: noted, still read.
                txt_tabs: 1,
                ..Default::default()
            }
        );
        let examples = all_examples(&corpus);
        assert_eq!(examples.len(), 51);
        assert_eq!(examples.iter().filter(|e| e.label.is_some()).count(), 1);
        assert!(examples
            .iter()
            .any(|e| e.text == "the quick fox number 7 jumps ."));
    }

    #[test]
    fn skip_message() {
        assert_eq!(SkipCounts::default().message(), None);
        let one = SkipCounts {
            too_short: 1,
            ..Default::default()
        };
        assert_eq!(one.to_string(), "skipped 1 line: 1 too short");
    }

    #[test]
    fn gzip_by_extension_and_by_magic() {
        let dir = tempfile::tempdir().unwrap();
        let text = many_lines(Some("x"), 30);
        for name in ["data.tsv.gz", "data-without-extension"] {
            let path = dir.path().join(name);
            write_file(&path, &gzip(text.as_bytes()));
            let corpus = Corpus::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
            assert_eq!(all_examples(&corpus).len(), 30, "{name}");
            assert_eq!(corpus.hash, hex(&Sha256::digest(text.as_bytes())));
        }
        // A `.gz` name on data that is not gzip is an error naming the file.
        let bogus = dir.path().join("bogus.txt.gz");
        write_file(&bogus, text.as_bytes());
        let err = Corpus::load(bogus.to_str().unwrap(), &LoadOptions::default()).unwrap_err();
        assert!(format!("{err:#}").contains("bogus.txt.gz"), "{err:#}");
    }

    #[test]
    fn directory_corpus() {
        let dir = tempfile::tempdir().unwrap();
        write_file(
            &dir.path().join("train.tsv"),
            many_lines(Some("a"), 20).as_bytes(),
        );
        write_file(&dir.path().join("valid.txt"), b"one valid line\n");
        write_file(
            &dir.path().join("test.tsv.gz"),
            &gzip(b"b\tone test line\n\n"),
        );

        let spec = dir.path().to_str().unwrap();
        let corpus = Corpus::load(spec, &LoadOptions::default()).unwrap();
        assert_eq!(
            (corpus.train.len(), corpus.valid.len(), corpus.test.len()),
            (20, 1, 1)
        );
        assert_eq!(corpus.valid[0].label, None);
        assert_eq!(corpus.test[0].label.as_deref(), Some("b"));
        assert_eq!(corpus.skipped.empty, 1);
        assert_eq!(corpus.labels(), ["a", "b"]);

        // Moving a line to another split changes the hash.
        write_file(&dir.path().join("valid.txt"), b"");
        write_file(
            &dir.path().join("test.tsv.gz"),
            &gzip(b"one valid line\nb\tone test line\n\n"),
        );
        let moved = Corpus::load(spec, &LoadOptions::default()).unwrap();
        assert_ne!(moved.hash, corpus.hash);

        // Two candidates for one split are ambiguous.
        write_file(&dir.path().join("valid.tsv"), b"x\n");
        let err = Corpus::load(spec, &LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("several valid files"), "{err:#}");

        fs::remove_file(dir.path().join("test.tsv.gz")).unwrap();
        fs::remove_file(dir.path().join("valid.tsv")).unwrap();
        let err = Corpus::load(spec, &LoadOptions::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("no test file"), "{message}");
        assert!(message.contains("test.tsv"), "{message}");
    }

    #[test]
    fn unusable_corpus_and_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        write_file(&path, b"\n\xff\n");
        let err = Corpus::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "corpus bad.txt has no usable lines in its train split \
             (skipped 2 lines: 1 empty, 1 non-UTF-8)"
        );

        let missing = dir.path().join("nope.tsv");
        let err = Corpus::load(missing.to_str().unwrap(), &LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("nope.tsv"), "{err:#}");
        assert!(err.to_string().contains("does not exist"), "{err:#}");
    }

    fn piece(kind: GlossKind, text: &str) -> GlossPiece {
        GlossPiece {
            kind,
            text: text.to_owned(),
        }
    }

    #[test]
    fn gloss_definitions_and_examples() {
        use GlossKind::{Definition as D, Example as E};
        let cases: Vec<(&str, Vec<GlossPiece>)> = vec![
            (
                "a feline mammal; usually kept as a pet",
                vec![piece(D, "a feline mammal"), piece(D, "usually kept as a pet")],
            ),
            (
                "not endowed with life; \"the inorganic world is inanimate\"; \"inanimate objects\"",
                vec![
                    piece(D, "not endowed with life"),
                    piece(E, "the inorganic world is inanimate"),
                    piece(E, "inanimate objects"),
                ],
            ),
            (
                "in the habit; \"he was used to it; mostly\"; \"so it goes\"",
                vec![
                    piece(D, "in the habit"),
                    piece(E, "he was used to it; mostly"),
                    piece(E, "so it goes"),
                ],
            ),
            (
                "lacking energy; \"much benevolence of the passive order\"- George Meredith; \"x y\" - R.H.Rovere",
                vec![
                    piece(D, "lacking energy"),
                    piece(E, "much benevolence of the passive order"),
                    piece(E, "x y"),
                ],
            ),
            (
                "(usually followed by \"to\") having the means",
                vec![piece(D, "(usually followed by \"to\") having the means")],
            ),
            (
                "promise of reward as in \"carrot and stick\"",
                vec![piece(D, "promise of reward as in \"carrot and stick\"")],
            ),
            // Examples introduced by a colon or comma instead of a semicolon.
            (
                "go under, \"the raft sank\"; travel up :\"we ascended\"",
                vec![
                    piece(D, "go under"),
                    piece(E, "the raft sank"),
                    piece(D, "travel up"),
                    piece(E, "we ascended"),
                ],
            ),
        ];
        for (gloss, expected) in cases {
            assert_eq!(split_gloss(gloss), expected, "{gloss}");
        }
    }

    #[test]
    fn gloss_with_unbalanced_quotes() {
        use GlossKind::{Definition as D, Example as E};
        let cases: Vec<(&str, Vec<GlossPiece>)> = vec![
            // Missing closing quote, then a new example.
            (
                "having toes; \"long-toed; \"five-toed\"",
                vec![
                    piece(D, "having toes"),
                    piece(E, "long-toed"),
                    piece(E, "five-toed"),
                ],
            ),
            // Missing opening quote, followed by a definition.
            (
                "wrong; the wrong side of the road\"; more definition",
                vec![
                    piece(D, "wrong"),
                    piece(E, "the wrong side of the road"),
                    piece(D, "more definition"),
                ],
            ),
            // Unclosed at the very end, and odd stray quotes.
            (
                "classical; \"classical Greek",
                vec![piece(D, "classical"), piece(E, "classical Greek")],
            ),
            ("\"", vec![]),
            (";;\"\";", vec![]),
            (
                "a \"stray quote in a definition",
                vec![piece(D, "a stray quote in a definition")],
            ),
            ("", vec![]),
        ];
        for (gloss, expected) in cases {
            assert_eq!(split_gloss(gloss), expected, "{gloss}");
        }
    }

    #[test]
    fn synset_lines() {
        let noun = "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | that which is perceived  ";
        assert_eq!(
            parse_synset_line(noun).unwrap(),
            Synset {
                lexname: "noun.Tops",
                gloss: "that which is perceived"
            }
        );
        let verb = "00002325 29 v 01 respire 1 002 $ 00001740 v 0000 @ 02108395 v 0000 01 + 02 00 | undergo respiration  ";
        assert_eq!(parse_synset_line(verb).unwrap().lexname, "verb.body");
        let adj = "00001740 00 a 01 able 0 001 ! 00002098 a 0101 | having the necessary means; \"able to swim\"  ";
        assert_eq!(parse_synset_line(adj).unwrap().lexname, "adj.all");

        for bad in [
            "00001740 45 n 01 entity 0 000 | out of range lex_filenum",
            "00001740 03 n 02 entity 0 000 | too few words",
            "00001740 03 n 01 entity 0 000 extra | trailing field",
            "00001740 03 n 01 entity 0 000 no gloss",
        ] {
            assert!(parse_synset_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn convert_small_wordnet() {
        let wn = tempfile::tempdir().unwrap();
        let header = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2   \n  3 WordNet 3.0 Copyright 2006 by Princeton University.  \n";
        let noun = format!(
            "{header}00001740 05 n 01 cat 0 000 | a small domesticated feline mammal; \"the cat sat on the mat today\"; \"short\"  \n\
             00001741 05 n 01 kitty 0 000 | a young or small domesticated cat; \"the cat sat on the mat today\"  \n"
        );
        let verb = format!(
            "{header}00002325 29 v 01 purr 0 000 01 + 02 00 | make a soft low vibrating sound like a cat  \n"
        );
        write_file(&wn.path().join("data.noun"), noun.as_bytes());
        write_file(&wn.path().join("data.verb"), verb.as_bytes());
        write_file(&wn.path().join("data.adj"), header.as_bytes());
        write_file(&wn.path().join("data.adv"), header.as_bytes());

        let out = tempfile::tempdir().unwrap();
        let report = convert_wordnet(wn.path(), out.path()).unwrap();
        assert_eq!(report.per_split.iter().sum::<usize>(), 4);
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.out_of_range, 1);
        assert_eq!(report.labels, 2);

        let license = fs::read_to_string(out.path().join("LICENSE")).unwrap();
        assert!(
            license.starts_with("This corpus is derived from WordNet 3.0 by Princeton University")
        );
        assert!(license.contains("\nThis software and database is being provided to you, the LICENSEE, by\n\nWordNet 3.0 Copyright"));

        let corpus = Corpus::load(out.path().to_str().unwrap(), &LoadOptions::default());
        // Four lines may all miss the train split; only check when they don't.
        if let Ok(corpus) = corpus {
            assert_eq!(all_examples(&corpus).len(), 4);
            assert_eq!(corpus.labels(), ["noun.animal", "verb.body"]);
        }

        // A malformed line is reported with its file and line number.
        write_file(
            &wn.path().join("data.adv"),
            format!("{header}garbage\n").as_bytes(),
        );
        let err = convert_wordnet(wn.path(), out.path()).unwrap_err();
        assert!(format!("{err:#}").contains("data.adv:4"), "{err:#}");
    }

    #[test]
    fn bundled_wordnet_loads() {
        let corpus = Corpus::bundled_wordnet().unwrap();
        assert_eq!(corpus.name, "wordnet");
        let total = corpus.train.len() + corpus.valid.len() + corpus.test.len();
        assert!(total > 100_000, "{total}");
        let labels = corpus.labels();
        assert!(!labels.is_empty() && labels.len() <= 45, "{labels:?}");
        assert_eq!(corpus.skipped.total(), 0);
        // Every bundled line is already in its hash-assigned split.
        assert!(corpus
            .valid
            .iter()
            .all(|e| split_of(&e.text) == Split::Valid));
        // The same corpus through `load` with the same options.
        let again = Corpus::load("wordnet", &LoadOptions::default()).unwrap();
        assert_eq!(again.hash, corpus.hash);
    }
}
