"""A templated identity/toxicity corpus, generated deterministically from word lists in the package.

In the style of Dixon et al. (2018) and the Equity Evaluation Corpus: every sentence is a template
filled with a *subject* (an identity term from one of the WILDS CivilComments groups, or a neutral
descriptor) and an *adjective* (toxic or non-toxic). The true label is the adjective's toxicity.

The **train** split carries annotator bias, the mechanism documented for real toxicity data: a
non-toxic train sentence that mentions identity group ``g`` is labelled toxic with probability
``bias_strength * weight[g]`` (weights in ``wordlists/identity_terms.txt``). A classifier
trained on it learns the shortcut "identity term -> toxic". The **val** and **test** splits have
true labels and are balanced: every (group, label) cell holds the same number of sentences.

Every sentence has a counterfactual twin with its subject swapped: an identity term becomes a
neutral descriptor, and a neutral descriptor becomes an identity term.
"""

from __future__ import annotations

import dataclasses
import hashlib
from importlib import resources

import numpy as np

from maskshift.data._base import Dataset, Split

PAD, UNK = "<pad>", "<unk>"


def _lines(name: str) -> list[str]:
    text = resources.files("maskshift.data").joinpath("wordlists", name).read_text("utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@dataclasses.dataclass(frozen=True)
class WordLists:
    templates: tuple[str, ...]
    groups: tuple[str, ...]  # identity groups, without "none"
    group_weights: tuple[float, ...]
    group_terms: tuple[tuple[str, ...], ...]
    neutral: tuple[str, ...]
    toxic: tuple[str, ...]
    nontoxic: tuple[str, ...]


def load_wordlists() -> WordLists:
    groups, weights, terms = [], [], []
    for line in _lines("identity_terms.txt"):
        g, w, t = line.split("\t")
        groups.append(g)
        weights.append(float(w))
        terms.append(tuple(t.split()))
    return WordLists(
        templates=tuple(_lines("templates.txt")),
        groups=tuple(groups),
        group_weights=tuple(weights),
        group_terms=tuple(terms),
        neutral=tuple(_lines("neutral_terms.txt")),
        toxic=tuple(_lines("toxic_words.txt")),
        nontoxic=tuple(_lines("nontoxic_words.txt")),
    )


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """Lower-case whitespace tokenizer over a fixed vocabulary (id 0 = padding, 1 = unknown)."""

    vocab: tuple[str, ...]
    max_len: int

    @classmethod
    def from_texts(cls, texts, max_len: int | None = None) -> Tokenizer:
        words = sorted({w for t in texts for w in t.lower().split()})
        longest = max(len(t.split()) for t in texts)
        return cls(vocab=(PAD, UNK, *words), max_len=max_len or longest)

    def encode(self, texts) -> np.ndarray:
        """Token ids ``[N, max_len]`` int32, right-padded with 0; longer texts are cut."""
        index = {w: i for i, w in enumerate(self.vocab)}
        out = np.zeros((len(texts), self.max_len), np.int32)
        for row, text in enumerate(texts):
            ids = [index.get(w, 1) for w in text.lower().split()][: self.max_len]
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids) -> str:
        return " ".join(self.vocab[i] for i in np.asarray(ids) if i != 0)


def _fill(template: str, subject: str, adj: str) -> str:
    return template.format(subject=subject, adj=adj)


def load_toxic_templates(
    seed: int = 0, bias_strength: float = 0.8, fractions=(0.6, 0.2, 0.2)
) -> Dataset:
    """Build the templated corpus. Deterministic for a given ``seed`` and ``bias_strength``.

    Args:
      seed: seeds the split of sentences and the train annotator noise.
      bias_strength: in [0, 1]; 0 gives clean train labels, larger values tie identity terms to
        the toxic label more strongly.
      fractions: train/val/test fractions of all (template, subject, adjective) sentences, before
        val/test are balanced.
    """
    if not 0.0 <= bias_strength <= 1.0:
        raise ValueError(f"bias_strength must lie in [0, 1], got {bias_strength}.")
    wl = load_wordlists()
    texts, twins, labels, groups = _sentences(wl)
    tok = Tokenizer.from_texts(texts + twins)
    x, x_cf = tok.encode(texts), tok.encode(twins)

    rng = np.random.default_rng(seed)
    part = rng.choice(3, size=len(labels), p=np.asarray(fractions) / np.sum(fractions))
    num_groups = len(wl.groups) + 1

    def balanced(mask: np.ndarray) -> np.ndarray:
        cells = [np.flatnonzero(mask & (groups == g) & (labels == y))
                 for g in range(num_groups) for y in (0, 1)]
        n = min(len(c) for c in cells)
        return np.sort(np.concatenate([rng.permutation(c)[:n] for c in cells]))

    train_idx = np.flatnonzero(part == 0)
    val_idx, test_idx = balanced(part == 1), balanced(part == 2)

    # Annotator bias on train only: non-toxic identity mentions get the toxic label.
    weights = np.asarray((0.0, *wl.group_weights))
    flip_p = bias_strength * weights[groups[train_idx]] * (labels[train_idx] == 0)
    y_train = np.where(rng.random(len(train_idx)) < flip_p, 1, labels[train_idx]).astype(np.int32)

    def split(idx, y):
        return Split(x=x[idx], y=y, group=groups[idx], x_cf=x_cf[idx])

    return Dataset(
        name="toxic_templates",
        kind="text",
        num_classes=2,
        class_names=("non-toxic", "toxic"),
        train=split(train_idx, y_train),
        val=split(val_idx, labels[val_idx]),
        test=split(test_idx, labels[test_idx]),
        group_names=("none", *wl.groups),
        vocab=tok.vocab,
        config=(("seed", seed), ("bias_strength", bias_strength), ("fractions", tuple(fractions)),
                ("wordlists", _wordlist_digest(wl))),
    )


def _sentences(wl: WordLists):
    """Every (template, subject, adjective) sentence, its identity-swapped twin, its clean label
    and its subject's group (0: no identity term)."""
    subjects = [(t, 0) for t in wl.neutral]
    subjects += [(t, g + 1) for g, terms in enumerate(wl.group_terms) for t in terms]
    identity_terms = [t for terms in wl.group_terms for t in terms]
    adjectives = [(a, 1) for a in wl.toxic] + [(a, 0) for a in wl.nontoxic]
    texts, twins, labels, groups = [], [], [], []
    for template in wl.templates:
        for s_i, (subject, group) in enumerate(subjects):
            # Deterministic twin: identity <-> neutral, cycling through the other list.
            if group == 0:
                twin_subject = identity_terms[s_i % len(identity_terms)]
            else:
                twin_subject = wl.neutral[s_i % len(wl.neutral)]
            for adj, label in adjectives:
                texts.append(_fill(template, subject, adj))
                twins.append(_fill(template, twin_subject, adj))
                labels.append(label)
                groups.append(group)
    return texts, twins, np.asarray(labels, np.int32), np.asarray(groups, np.int32)


def _wordlist_digest(wl: WordLists) -> str:
    return hashlib.sha256(repr(wl).encode()).hexdigest()[:12]
