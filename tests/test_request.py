"""One request object (issue "a house to live in"): ``RunRequest`` is checked once, when it is made, and every
part of the app takes its fields from it: the /defend API's arguments, a shared link, the run cache's key and
what the worker is sent. Adding a setting means a field, its widget and a value in ``OTHER`` below."""
from urllib.parse import parse_qsl

import pytest
import torch
from conftest import ROOT

from ism.app.handlers import DemoHandler
from ism.app.links import parse_link, share_query
from ism.app.request import MAX_EPS, RunRequest, UserError
from ism.app.worker import Work, run_key
from ism.attacks.standard import LABELS, MAX_STEPS, TABLE, make_attack

CAT = str(ROOT / "examples/cifar10/cat_0.png")
# a value other than the default for every field (a new field needs one here: the tests below then cover it)
OTHER = {"file": CAT, "attack": "mifgsm", "eps": 6 / 255, "steps": 7, "threat": "adaptive white-box", "restarts": 3,
         "iterations": 12, "seed": 99, "defense": "cifar10", "read": "regenerated"}


def test_every_field_has_a_test_value():
    assert set(OTHER) == set(RunRequest.names())
    default = RunRequest()
    assert all(getattr(default, k) != v for k, v in OTHER.items()), "OTHER must differ from the defaults"


def test_a_request_is_checked_once_and_put_in_one_form():
    r = RunRequest(attack="PGD", eps="8/255", steps=10.0, threat="adaptive", seed="12", read="purified image (ISM)")
    assert (r.attack, r.steps, r.threat, r.seed, r.read) == ("pgd", 10, "adaptive white-box", 12, "purified")
    assert r.eps == pytest.approx(8 / 255)
    for bad, words in (({"attack": "boom"}, "choose one of"), ({"eps": MAX_EPS + 0.01}, "epsilon must lie"),
                       ({"steps": MAX_STEPS + 1}, "attack steps"), ({"steps": 2.5}, "whole number"),
                       ({"threat": "omniscient"}, "threat model"), ({"restarts": 0}, "restarts"),
                       ({"restarts": 8, "iterations": 100, "seed": -1}, "seed"), ({"read": "input"}, "reads one of"),
                       ({"restarts": 8, "iterations": 100, "steps": 1}, None)):
        if words is None:
            RunRequest(**bad)                               # within every bound, alone and together
            continue
        with pytest.raises(UserError, match=words):
            RunRequest(**bad)
    with pytest.raises(UserError, match="iterations must lie"):
        RunRequest(restarts=8, iterations=100).but(iterations=101)      # a copy is checked again


@pytest.fixture(scope="module")
def handler(defense):
    return DemoHandler(defense, "cifar10")


def test_a_link_carries_every_setting(handler):
    """Round trip: every field but the picture's file name is in the link (the picture by its example)."""
    req = handler.request(**OTHER)
    link = parse_link(dict(parse_qsl(share_query(handler, req)[1:])), {"cifar10": handler})
    assert link.run and link.request.computed() == req.computed()
    assert link.request.file.endswith("cat_0.png")
    old = parse_link({"dataset": "cifar10", "example": "cat_0", "seed": "4"}, {"cifar10": handler})   # an old link
    assert old.request.defense == "cifar10" and old.request.seed == 4


def test_the_cache_key_sees_every_setting_but_the_file_name():
    """Two requests are the same run exactly when every computed field agrees (the page re-saves an example under
    a new file name: that must not matter)."""
    x = torch.rand(1, 3, 32, 32)
    base = RunRequest()
    key = run_key("d", Work(base, x, 3, 2))
    for name in RunRequest.names():
        other = run_key("d", Work(base.but(**{name: OTHER[name]}), x, 3, 2))
        assert (other == key) == (name == "file"), name


def test_the_api_takes_the_requests_fields(app_demo):
    """/defend's arguments are RunRequest's fields, in order (built from them, not written out again)."""
    params = app_demo.get_api_info()["named_endpoints"]["/defend"]["parameters"]
    assert [p["parameter_name"] for p in params] == list(RunRequest.names())


def test_a_setting_left_out_is_the_defenses_own(handler):
    """None for the strength or the regeneration (sent through the API) means the defense's page default."""
    from ism.app.defenses import default_eps

    d = handler.defense
    req = handler.request(eps=None, restarts=None, iterations=None, attack="fgsm")
    assert (req.eps, req.restarts, req.iterations) == (default_eps(d), d.config.regen_restarts, d.config.regen_steps)
    faces = type(d)(d.classifier, d.ism, d.detector, d.generator, config=type(d.config)(dataset="celeba"))
    assert RunRequest.for_defense("f", faces, eps=None).eps == default_eps(faces) == 16 / 255


def test_an_attacks_facts_are_one_row():
    """The dropdowns show the table's labels, picking one sets its steps, and its builder makes its attack."""
    assert list(LABELS.values()) == list(TABLE)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    for a in TABLE.values():
        assert type(make_attack(a.label, model, 8 / 255, steps=2)).__name__.lower() == a.name   # torchattacks' class
        note = a.note(8 / 255, a.steps)
        assert ("epsilon does not apply" in note) == (not a.uses_eps) and (a.norm in note or not a.uses_eps)
    assert TABLE["cw"].steps == 50 and TABLE["square"].run_steps(50) == 10
