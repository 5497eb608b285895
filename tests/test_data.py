import numpy as np
import pytest

from maskshift.data import Tokenizer, load_dataset, load_digits_dataset, load_toxic_templates


def test_digits_split_is_fixed_disjoint_and_stratified(digits):
    again = load_digits_dataset()
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(digits.split(s).x, again.split(s).x)
    n = sum(len(digits.split(s)) for s in ("train", "val", "test"))
    assert n == 1797
    assert digits.train.x.shape[1:] == (8, 8, 1) and digits.train.x.dtype == np.float32
    assert 0.0 <= digits.train.x.min() and digits.train.x.max() <= 1.0
    # every class is in every split, in about the same proportion
    for s in ("train", "val", "test"):
        counts = np.bincount(digits.split(s).y, minlength=10)
        assert counts.min() > 0.8 * counts.max()
    # a different seed gives a different split
    assert not np.array_equal(load_digits_dataset(seed=1).test.y, digits.test.y)


def test_text_corpus_is_deterministic_and_balanced(toxic):
    again = load_toxic_templates()
    np.testing.assert_array_equal(toxic.train.x, again.train.x)
    np.testing.assert_array_equal(toxic.train.y, again.train.y)
    assert toxic.fingerprint() == again.fingerprint()
    for s in ("val", "test"):
        sp = toxic.split(s)
        cells = np.bincount(sp.group * 2 + sp.y, minlength=2 * len(toxic.group_names))
        assert cells.min() == cells.max() > 0, "val/test must be balanced over (group, label)"


def test_counterfactual_twin_swaps_only_the_identity_term(toxic):
    tok = Tokenizer(toxic.vocab, toxic.train.x.shape[1])
    for i in range(0, len(toxic.test), 97):
        a = tok.decode(toxic.test.x[i]).split()
        b = tok.decode(toxic.test.x_cf[i]).split()
        assert len(a) == len(b)
        assert sum(u != v for u, v in zip(a, b, strict=True)) == 1


def test_train_labels_carry_the_configured_annotator_bias():
    clean = load_toxic_templates(bias_strength=0.0)
    biased = load_toxic_templates(bias_strength=0.8)
    np.testing.assert_array_equal(clean.train.x, biased.train.x)
    # clean labels follow the adjective; biased ones add toxic labels on identity mentions only
    changed = clean.train.y != biased.train.y
    assert changed.sum() > 0.1 * len(changed)
    assert np.all(biased.train.group[changed] > 0)
    assert np.all(clean.train.y[changed] == 0) and np.all(biased.train.y[changed] == 1)
    np.testing.assert_array_equal(clean.test.y, biased.test.y)  # test labels are the truth
    with pytest.raises(ValueError, match="bias_strength"):
        load_toxic_templates(bias_strength=1.5)


def test_tokenizer_round_trip_and_unknown_words():
    tok = Tokenizer.from_texts(["a b c", "b c d e"])
    ids = tok.encode(["a b e", "zzz a"])
    assert ids.shape == (2, 4) and ids.dtype == np.int32
    assert tok.decode(ids[0]) == "a b e"
    assert ids[1, 0] == 1  # unknown
    assert ids[1, 2] == 0  # padding


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown dataset 'nope'.*digits"):
        load_dataset("nope")
