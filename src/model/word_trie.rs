//! Decoding restricted to real words: a trie over the piece sequences of the words a subword
//! model was trained on, so that greedy and beam decoding only ever spell words of the training
//! corpus (no "pandare" or "hunglled").
//!
//! A word's pieces are what the model's own tokenizer makes of the word alone: its first piece
//! carries the word-start mark `▁`, the rest continue it. A decoding is walked through the trie
//! piece by piece; at each step the allowed pieces are the children of the current node (the
//! ways to continue the word), and — where the pieces so far already spell a whole word, or
//! nothing has been decoded yet — every piece that starts a word, and `<eos>`.
//!
//! Word-level vocabularies have nothing to restrict: every token already is a word of the
//! corpus, so [`WordTrie::new`] is only built for subword vocabularies.

use std::collections::{BTreeSet, HashMap};

use crate::vocab::{TokenizerKind, Vocab, EOS};

/// A node of the trie: its children by piece id, and whether the path to it spells a word.
#[derive(Debug, Default, Clone)]
struct Node {
    children: HashMap<u32, u32>,
    word_end: bool,
}

/// Where a decoding stands in the trie: at a node (the root before any word).
pub type TrieState = u32;

/// The root state: before the first word.
pub const ROOT: TrieState = 0;

/// A trie over the piece sequences of a word list.
#[derive(Debug, Clone)]
pub struct WordTrie {
    nodes: Vec<Node>,
    vocab_len: usize,
    /// Pieces allowed at a word boundary: every first piece of a word, and `<eos>`.
    boundary: Vec<bool>,
    words: usize,
}

impl WordTrie {
    /// The trie of `words` (each a normalized word: no spaces) as `vocab` spells them; `None`
    /// for a word-level vocabulary, which needs no restriction. Words the tokenizer spells
    /// with `<unk>` pieces are left out.
    pub fn new<'a>(vocab: &Vocab, words: impl IntoIterator<Item = &'a str>) -> Option<WordTrie> {
        if vocab.kind() == TokenizerKind::Word {
            return None;
        }
        let mut trie = WordTrie {
            nodes: vec![Node::default()],
            vocab_len: vocab.len(),
            boundary: vec![false; vocab.len()],
            words: 0,
        };
        let distinct: BTreeSet<&str> = words
            .into_iter()
            .filter(|w| !w.is_empty() && !w.contains(' '))
            .collect();
        let distinct: Vec<&str> = distinct.into_iter().collect();
        // Words are spelled a few hundred at a time (one tokenizer call each): a word's pieces
        // run from its `▁` piece to the next. Where the count of words does not come out (a
        // unigram `<unk>` can swallow the mark), the chunk is spelled word by word.
        for chunk in distinct.chunks(512) {
            let ids = vocab.encode_normalized(&chunk.join(" "));
            let mut spelled: Vec<&[u32]> = Vec::with_capacity(chunk.len());
            let mut start = 0;
            for i in 1..=ids.len() {
                if i == ids.len() || vocab.starts_word(ids[i]) {
                    spelled.push(&ids[start..i]);
                    start = i;
                }
            }
            if spelled.len() == chunk.len() && ids.first().is_some_and(|&p| vocab.starts_word(p)) {
                for pieces in spelled {
                    trie.insert_checked(pieces);
                }
            } else {
                for word in chunk {
                    trie.insert_checked(&vocab.encode_normalized(word));
                }
            }
        }
        trie.boundary[EOS as usize] = true;
        for &piece in trie.nodes[ROOT as usize].children.keys() {
            trie.boundary[piece as usize] = true;
        }
        Some(trie)
    }

    /// The trie of every word of `texts` (normalized sentences: words separated by spaces).
    pub fn from_texts<'a>(
        vocab: &Vocab,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Option<WordTrie> {
        Self::new(vocab, texts.into_iter().flat_map(|t| t.split(' ')))
    }

    /// Inserts a word's pieces unless it has none or holds a special token (`<unk>`).
    fn insert_checked(&mut self, pieces: &[u32]) {
        if !pieces.is_empty() && pieces.iter().all(|&p| p > EOS) {
            self.insert(pieces);
        }
    }

    fn insert(&mut self, pieces: &[u32]) {
        let mut node = ROOT as usize;
        for &p in pieces {
            let next = self.nodes.len() as u32;
            let child = *self.nodes[node].children.entry(p).or_insert(next);
            if child == next {
                self.nodes.push(Node::default());
            }
            node = child as usize;
        }
        if !self.nodes[node].word_end {
            self.nodes[node].word_end = true;
            self.words += 1;
        }
    }

    /// Distinct words in the trie.
    pub fn words(&self) -> usize {
        self.words
    }

    /// Whether a decoding in `state` may stop or start a new word here.
    fn at_boundary(&self, state: TrieState) -> bool {
        state == ROOT || self.nodes[state as usize].word_end
    }

    /// Whether `piece` may follow in `state`.
    pub fn allows(&self, state: TrieState, piece: u32) -> bool {
        self.nodes[state as usize].children.contains_key(&piece)
            || (self.at_boundary(state) && self.boundary.get(piece as usize) == Some(&true))
    }

    /// Writes the allowed pieces in `state` into `mask` (one flag per vocabulary id).
    pub fn mask(&self, state: TrieState, mask: &mut Vec<bool>) {
        mask.clear();
        if self.at_boundary(state) {
            mask.extend_from_slice(&self.boundary);
        } else {
            mask.resize(self.vocab_len, false);
        }
        // The root's children are the boundary pieces, already set.
        if state != ROOT {
            for &p in self.nodes[state as usize].children.keys() {
                mask[p as usize] = true;
            }
        }
    }

    /// The state after `piece` (which [`Self::allows`]): the child, or a new word's first
    /// node. `<eos>` and disallowed pieces leave the state as it is.
    pub fn advance(&self, state: TrieState, piece: u32) -> TrieState {
        if let Some(&child) = self.nodes[state as usize].children.get(&piece) {
            return child;
        }
        if self.at_boundary(state) {
            if let Some(&child) = self.nodes[ROOT as usize].children.get(&piece) {
                return child;
            }
        }
        state
    }

    /// The vocabulary size the masks have.
    pub fn vocab_len(&self) -> usize {
        self.vocab_len
    }
}
