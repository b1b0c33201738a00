"""The sanity checks flag the patterns of a flawed evaluation, and pass a sound one."""
import pytest

from ism.eval.keys import Cell, ResultsError, Sanity
from ism.eval.sanity import sanity_checks, warnings_text


def _res(defense_curve, clean=0.8, sanity=None, n=10000):
    gray = {str(Cell("pgd", e)): {"attack": "pgd", "eps": e, "defense": a, "no_defense": 0.1, "images": n}
            for e, a in defense_curve}
    res = {"clean": {"images": n, "pipeline": clean, "classifier": 0.8}, "graybox": gray}
    if sanity:
        res["sanity"] = {"images": 200, "eps": 8 / 255, "accuracy": sanity}
    return res


def test_sound_results_pass():
    checks = sanity_checks(_res([(0.1, 0.6), (0.2, 0.5), (0.3, 0.4)], sanity={
        Sanity.PGD.value: 0.30, Sanity.PGD_MORE_STEPS.value: 0.28, Sanity.PGD_UNBOUNDED.value: 0.0,
        Sanity.SQUARE.value: 0.45}))
    assert checks and all(c["passed"] for c in checks)
    assert warnings_text(checks) == []


def test_label_leaking_and_masking_are_flagged():
    checks = sanity_checks(_res([(0.1, 0.4), (0.2, 0.6), (0.3, 0.9)], clean=0.75, sanity={
        Sanity.PGD.value: 0.30, Sanity.PGD_MORE_STEPS.value: 0.40, Sanity.PGD_UNBOUNDED.value: 0.3,
        Sanity.SQUARE.value: 0.10}))
    failed = {c["check"].split(" (")[0] for c in checks if not c["passed"]}
    assert failed == {"larger epsilon never raises accuracy", "accuracy under attack is not above clean accuracy",
                      "more attack steps never raise accuracy", "an unbounded attack reaches ~0% accuracy",
                      "black-box Square is not stronger than white-box PGD"}
    assert all(w.startswith("WARNING") for w in warnings_text(checks))


def test_noise_is_tolerated():
    # 0.500 -> 0.505 on 1,000 images is within sampling noise: not a violation
    checks = sanity_checks(_res([(0.1, 0.500), (0.2, 0.505)], n=1000))
    assert all(c["passed"] for c in checks)


def test_a_missing_or_renamed_cell_is_an_error_not_a_skipped_check():
    sanity = {Sanity.PGD.value: 0.3, Sanity.PGD_MORE_STEPS.value: 0.28, "adaptive PGD-50, eps = 1 (unbounded)": 0.0,
              Sanity.SQUARE.value: 0.45}     # one measurement under a display label: the old, fragile way
    with pytest.raises(ResultsError, match="adaptive_pgd_unbounded"):
        sanity_checks(_res([(0.1, 0.6)], sanity=sanity))
    res = _res([(0.1, 0.6)])
    assert Cell("pgd", 0.1).of(res, "graybox")["defense"] == 0.6
    with pytest.raises(ResultsError, match="pgd@0.0314"):
        Cell("pgd", 8 / 255).of(res, "graybox")
    assert Cell.parse(str(Cell("latent", 8 / 255))) == Cell("latent", round(8 / 255, 4))


def test_failed_checks_are_listed_in_words_for_visitors():
    """The curves tab lists a failed check without the results' column names (issue "plain words"), and the
    clean-trained and adversarially trained classifiers keep different names."""
    from ism.eval.curves import ALONE, curves_from_results
    from ism.eval.report import check_in_words, curves_note

    check = {"check": "larger epsilon never raises accuracy (graybox FGSM, base_no_defense)", "passed": False,
             "detail": "eps 0.200: 0.066 -> eps 0.300: 0.088"}
    words = check_in_words(check)
    assert words == ("Gray-box FGSM against the classifier alone (adversarially trained): accuracy rises as the "
                     "attack gets stronger, which no real defense allows (ε 0.200 → 0.300: 0.066 → 0.088).")
    above = {"check": "accuracy under attack is not above clean accuracy (graybox PGD, defense)", "passed": False,
             "detail": "eps 0.100: 0.960 > clean 0.929; eps 0.200: 0.989 > clean 0.929"}
    assert check_in_words(above) == ("Gray-box PGD against this defense: it scores higher on attacked pictures than "
                                     "on clean ones (clean 0.929; 0.960 at ε 0.100, 0.989 at ε 0.200).")
    res = {"clean": {"images": 10}, "sanity_checks": [check],
           "graybox": {"pgd@0.0314": {"attack": "pgd", "eps": 8 / 255, "base_no_defense": 0.4, "defense": 0.5}}}
    note = curves_note(res, "results/x.json")
    assert words in note and "base_no_defense" not in note and "graybox" not in note
    res["sanity_checks"].append(dict(check, check=check["check"].replace("base_no_defense", "no_defense")))
    assert curves_note(res, "results/x.json").count("accuracy rises") == 1   # the same figures, said once
    res["sanity_checks"][-1]["detail"] = "eps 0.200: 0.066 -> eps 0.300: 0.090"
    assert curves_note(res, "results/x.json").count("accuracy rises") == 2
    assert set(curves_from_results(res)) == {f"{ALONE}, gray-box", "this defense, gray-box"}
    assert "no defense" not in ALONE
