//! What a tab sees of the app: the [`Tab`] trait every tab implements, the context its key
//! and reply handlers get ([`Ctx`]: the model, the job book-keeping, the footer, the state
//! tabs share and the corpus map) and the read-only [`View`] its rendering gets.
//!
//! Tabs import this module and the ones below it (jobs, keys, widgets, the map component),
//! never `app` or each other: what one tab needs of another is in [`Shared`], and what it
//! asks of the app (show a sentence in Explore, load a checkpoint, cluster the corpus) is a
//! [`Command`] the app carries out after the tab returns.

use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::KeyEvent;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::jobs::{Job, JobKind, Jobs, ModelInfo, ReplyBody};
use super::map::{ColorBy, MapEnv, MapKey, MapState};
use super::widgets::{Status, TextInput, Theme};
use crate::coder::EncodedSentence;
use crate::index::CachedIndex;
use crate::meaning::Meanings;
use crate::pipeline::{ClusterView, MapRequest, NeighborIndex, SharedIndex};

/// The state more than one tab reads: Explore's sentence and code (which Neighbors, Clusters
/// and the map show), and what was computed about the corpus and the model once for all tabs.
#[derive(Debug, Default)]
pub struct Shared {
    /// The sentence's text as Explore last sent it to the encoder.
    pub text: String,
    /// The sentence as encoded (Explore's).
    pub sentence: Option<EncodedSentence>,
    /// The current (possibly edited) code.
    pub code: Vec<f32>,
    /// The latest decoding and the code it belongs to.
    pub decoding: Option<(Vec<f32>, Result<String, String>)>,
    /// What each bit means, for the loaded model (Explore's rows, Stats' table).
    pub meaning: MeaningState,
    /// The corpus clustering (the Clusters tab's; Explore names the current code's cluster,
    /// the map colours by it).
    pub clusters: Option<Arc<ClusterView>>,
    /// The corpus index (the Neighbors tab's; the map lays it out).
    pub index: Option<Arc<NeighborIndex>>,
    /// The corpus the index and the clustering are of (None: the checkpoint's own).
    pub corpus: Option<String>,
    /// Decode without keeping to the training corpus's words (`w` on Explore, Path and Sample;
    /// off by default: greedy and beam decodings of subword models are real words).
    pub raw_decoding: bool,
}

impl Shared {
    /// "cluster N: label" of the current code, once the corpus is clustered.
    pub fn cluster_name(&self) -> Option<String> {
        let view = self.clusters.as_ref()?;
        let k = view.nearest_cluster(&self.code)?;
        Some(format!(
            "cluster {}: {}",
            k + 1,
            view.report.clusters[k].label
        ))
    }

    /// Hamming distance (binary) of the current code from the encoded one.
    pub fn distance(&self) -> Option<usize> {
        self.sentence
            .as_ref()
            .map(|s| crate::explore::hamming(&s.code, &self.code))
    }
}

/// The bit meanings of the loaded model, computed (or loaded) in the background.
#[derive(Debug, Default)]
pub struct MeaningState {
    pub result: Option<Arc<CachedIndex<Meanings>>>,
    pub error: Option<String>,
}

impl MeaningState {
    pub fn meanings(&self) -> Option<&Meanings> {
        self.result.as_ref().map(|c| &c.index)
    }
}

/// What a tab asks of the app, carried out after the tab's handler returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Make `text` Explore's sentence (encoded; Explore's code is every tab's), staying here.
    Encode(String),
    /// The same, and show Explore.
    Explore(String),
    /// Replace the model.
    Load(PathBuf),
    /// Cluster the corpus unless it is clustered or being clustered (the map's colours).
    Cluster,
}

/// What a tab's key and reply handlers may read and change besides the tab itself.
pub struct Ctx<'a> {
    pub model: &'a ModelInfo,
    pub theme: Theme,
    pub jobs: &'a mut Jobs,
    pub status: &'a mut Option<Status>,
    pub shared: &'a mut Shared,
    /// The corpus map, the component the Neighbors and Clusters tabs show.
    pub map: &'a mut MapState,
    pub commands: &'a mut Vec<Command>,
}

impl Ctx<'_> {
    /// A line for the footer until the next key.
    pub fn notice(&mut self, text: impl Into<String>) {
        *self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        *self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// `w` on a tab that shows no decodings of its own: switches the real-words setting every
    /// tab shares and says where it shows.
    pub fn real_words_elsewhere(&mut self) {
        self.shared.raw_decoding = !self.shared.raw_decoding;
        let setting = if self.shared.raw_decoding {
            "raw decodings"
        } else {
            "real words"
        };
        self.notice(format!(
            "w: {setting} in Explore, Path, Sample and the Clusters analogy/attribute (nothing \
             here depends on it)"
        ));
    }

    pub fn command(&mut self, c: Command) {
        self.commands.push(c);
    }

    /// `e` on a sentence a tab lists (a neighbour, a sample, an analogy's result): it becomes
    /// Explore's sentence (typed into its field, encoded) and Explore is shown.
    pub fn open_in_explore(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return self.notice("nothing to open in Explore: it has no words");
        }
        self.command(Command::Explore(text.to_string()));
    }

    /// [`Ctx::open_in_explore`] for a decoding: a bag-of-words model's ("plant 0.120 · genus
    /// 0.081") goes in as its words.
    pub fn open_decoding_in_explore(&mut self, decoding: &str) {
        if self.model.caps.decodes_text {
            return self.open_in_explore(decoding);
        }
        let words: Vec<&str> = decoding
            .split(" · ")
            .filter_map(|w| w.split_whitespace().next())
            .collect();
        self.open_in_explore(&words.join(" "))
    }

    /// Shows the map (from the Neighbors or Clusters tab): loads it the first time.
    pub fn map_open(&mut self, color: Option<ColorBy>) {
        if let Some(c) = color {
            self.map.color = c;
        }
        if self.map.data.is_none()
            && self.map.error.is_none()
            && !self.jobs.is_pending(JobKind::Map)
        {
            self.map_request();
        }
    }

    /// Asks the worker for the map of the corpus index (the Neighbors tab's, if loaded).
    pub fn map_request(&mut self) {
        if !self.model.caps.encodes {
            return;
        }
        self.map.error = None;
        // A map on its way is the old request's: the new one's replace it.
        self.map.so_far = None;
        let req = MapRequest {
            corpus: self.shared.corpus.clone(),
            method: self.map.method,
            index: self.shared.index.clone().map(SharedIndex),
        };
        self.jobs.submit(Job::Map(req));
    }

    /// A key on the map; returns whether the user left it (the tab goes back to its list).
    pub fn map_key(&mut self, key: KeyEvent) -> bool {
        match self.map.key(key, self.model.caps) {
            MapKey::Stay => {}
            MapKey::Back => return true,
            MapKey::Notice(text) => self.notice(text),
            MapKey::Reload => self.map_request(),
            MapKey::NeedClusters => {
                if self.shared.clusters.is_none() {
                    self.command(Command::Cluster);
                    self.notice("clustering the corpus (7 Clusters); the colours follow");
                }
            }
            MapKey::Open(text) => self.command(Command::Explore(text)),
        }
        false
    }
}

/// What a tab's rendering reads besides the tab itself (rendering changes nothing).
pub struct View<'a> {
    pub model: &'a ModelInfo,
    pub theme: Theme,
    pub jobs: &'a Jobs,
    pub shared: &'a Shared,
    pub map: &'a MapState,
    pub ticks: u64,
}

impl View<'_> {
    /// What the map component draws from.
    pub fn map_env(&self) -> MapEnv<'_> {
        MapEnv {
            map: self.map,
            theme: self.theme,
            model: self.model,
            jobs: self.jobs,
            clusters: self.shared.clusters.as_ref(),
        }
    }
}

/// A tab of the explorer. The app holds one of each in its registry (`app::tabs!`), routes
/// keys, pastes and worker replies to them, and draws the one shown; the tab bar, the number
/// keys and the help list the registry's tabs in its order.
pub trait Tab {
    /// The help's rows (keys, description), from the tab's key table.
    fn help_rows() -> Vec<(String, String)>
    where
        Self: Sized;

    /// A key, when no text field of the app and no global key took it.
    fn key(&mut self, cx: &mut Ctx, key: KeyEvent);

    /// A reply of the worker for the newest request of its kind; a tab returns the replies it
    /// does not handle.
    fn reply(&mut self, _cx: &mut Ctx, body: ReplyBody) -> Option<ReplyBody> {
        Some(body)
    }

    /// A new model was loaded (each tab clears what it put into [`Shared`]); `shown`: this tab
    /// is the one on screen.
    fn model_changed(&mut self, _cx: &mut Ctx, _shown: bool) {}

    /// The tab is now shown.
    fn entered(&mut self, _cx: &mut Ctx) {}

    fn render(&self, view: &View, area: Rect, buf: &mut Buffer);

    /// The footer's hints (the app adds the global keys').
    fn hints(&self, view: &View) -> Vec<(&'static str, &'static str)>;

    /// Whether keys go into a text field (letters and digits are text, not commands).
    fn typing(&self, _view: &View) -> bool {
        false
    }

    /// Whether the tab shows the corpus map (its keys and hints are the map's).
    fn shows_map(&self) -> bool {
        false
    }

    /// The text field a paste goes into: the focused one, else a fresh one opened the way `/`
    /// does; None (after a notice, or for the app's "no text field") where there is none.
    fn paste_field(&mut self, _cx: &mut Ctx) -> Option<&mut TextInput> {
        None
    }

    /// What the header's activity list adds for this tab (a training run).
    fn activity(&self) -> Option<String> {
        None
    }

    /// What quitting now would stop, if anything (a training run that is going): the app then
    /// asks before it quits (`keys::CONFIRM_QUIT`).
    fn quit_question(&self) -> Option<String> {
        None
    }

    /// The app is quitting (a training run stops and saves).
    fn quitting(&mut self) {}
}
