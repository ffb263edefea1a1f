import pytest

from evaluation.voting import Sample, answer_key, best_of_k, choose, critic_filtered_vote, majority_vote, pass_at_k


def S(answer, correct=False, accepted=True):
    return Sample(answer, correct, accepted)


def test_answer_key_merges_equal_numbers():
    assert answer_key("0.5") == answer_key("1/2") == answer_key(" 1/2 ")
    assert answer_key("1,000") == answer_key("1000") and answer_key(None) is None
    assert answer_key("x + 1") == answer_key("X  +  1")


def test_majority_vote_counts_and_breaks_ties_by_first_seen():
    samples = [S("3"), S("5", True), S("5", True), S("3"), S("3")]
    assert majority_vote(samples, 1).answer == "3"
    assert majority_vote(samples, 3).answer == "5"  # 5 twice, 3 once
    assert majority_vote(samples, 4).answer == "3"  # tie 2-2: 3 was seen first
    assert majority_vote(samples, 5).answer == "3"
    assert majority_vote([S(None), S(None)], 2) is None


def test_critic_filtered_vote_drops_rejected_samples():
    # plain majority picks the wrong 7; the critic rejects two of the three 7s
    samples = [S("7", accepted=False), S("9", True), S("7", accepted=False), S("9", True, accepted=True), S("7")]
    assert not choose("majority", samples, 5)
    assert choose("critic_filtered_majority", samples, 5)
    assert critic_filtered_vote(samples, 5).answer == "9"
    # every sample rejected: fall back to the plain vote
    rejected = [S("4", accepted=False), S("4", accepted=False), S("2", True, accepted=False)]
    assert critic_filtered_vote(rejected, 3).answer == "4"


def test_best_of_k_takes_the_first_accepted_sample():
    samples = [S("1", accepted=False), S("2", True), S("3")]
    assert best_of_k(samples, 1).answer == "1"  # nothing accepted among the first 1: the first sample
    assert best_of_k(samples, 3).answer == "2"


def test_pass_at_k_and_method_names():
    samples = [S("1"), S("2"), S("3", True)]
    assert [pass_at_k(samples, k) for k in (1, 2, 3)] == [False, False, True]
    assert choose("pass@k", samples, 3)
    with pytest.raises(ValueError, match="valid: majority"):
        choose("mode", samples, 1)
