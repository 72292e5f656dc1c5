"""The feedback actions the app's buttons call: accept_as_normal returns a new, updated model
and leaves the given one as it was; evaluate_history reads the operator's labels."""

from __future__ import annotations

import numpy as np
import pytest
from test_partial_fit import textures

from padim_core import InvalidInputError, PadimModel
from padim_core.feedback import accept_as_normal, evaluate_history

pytestmark = pytest.mark.filterwarnings("ignore:only .* training images:UserWarning")


CONFIG = dict(backbone="resnet18", weights="random", d=16, image_size=64, crop=64, seed=3,
              device="cpu")


@pytest.fixture(scope="module")
def model() -> PadimModel:
    return PadimModel(**CONFIG).fit(textures(12, 0))


def test_accept_as_normal_learns_the_image_in_a_new_model(model: PadimModel) -> None:
    odd = [np.full((72, 72, 3), 240, np.uint8)]        # unlike every training texture
    state = model.state_
    accepted = accept_as_normal(model, odd, names=["bright.png"])
    assert model.state_ is state and model.n_train_images_ == 12      # old version intact
    assert accepted.model.n_train_images_ == 13 and accepted.names == ["bright.png"]
    assert accepted.after_scores[0] < accepted.before_scores[0]
    np.testing.assert_allclose(accepted.before_scores, model.predict(odd).scores)
    np.testing.assert_allclose(accepted.after_scores, accepted.model.predict(odd).scores)
    assert accepted.image_threshold_before == model.image_threshold_
    assert accepted.image_threshold == accepted.model.image_threshold_


def test_accept_skips_unreadable_and_refuses_when_nothing_is_readable(
        model: PadimModel) -> None:
    accepted = accept_as_normal(model, [b"junk", textures(1, 4)[0]], names=["a", "b"],
                                before_scores=[1.0, 2.0])
    assert accepted.names == ["b"] and accepted.skipped[0][0] == "a"
    assert list(accepted.before_scores) == [2.0]
    with pytest.raises(InvalidInputError, match="none of the images"), \
            pytest.warns(UserWarning):
        accept_as_normal(model, [b"junk"], names=["a"])


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_an_image_already_accepted_is_refused_not_counted_twice(model: PadimModel) -> None:
    """Why: the app's button stayed enabled after accepting, and a second click added the
    same image again (215 → 216 training images, its score dropping further each time)."""
    part, other = _png(textures(1, 7)[0]), _png(textures(1, 8)[0])
    first = accept_as_normal(model, [part], names=["014.png"])
    assert first.model.n_train_images_ == 13
    reloaded = PadimModel.from_bytes(first.model.to_bytes())     # the log travels with it
    with pytest.raises(InvalidInputError, match="014 again.png: already learned"):
        accept_as_normal(reloaded, [part], names=["014 again.png"])
    both = accept_as_normal(reloaded, [part, other, other], names=["a.png", "b.png", "c.png"])
    assert both.names == ["b.png"] and both.model.n_train_images_ == 14
    assert [name for name, _ in both.skipped] == ["a.png", "c.png"]


def test_a_training_image_is_already_learned(model: PadimModel) -> None:
    """An operator accepting a part that was in the training set added it a second time."""
    from padim_core.feedback import learned_sha256

    train = [_png(im) for im in textures(12, 0)]
    fitted = PadimModel(**CONFIG).fit(train)
    assert len(learned_sha256(fitted)) == 12
    with pytest.raises(InvalidInputError, match="003.png: already learned.*training images"):
        accept_as_normal(fitted, [train[3]], names=["003.png"])


def test_evaluate_history() -> None:
    defect = [True, True, False, False, False]
    scores = [5.0, 3.0, 1.0, 3.5, 2.0]
    got = evaluate_history(defect, scores)
    assert got["catch_all_threshold"] == 3.0 and got["catch_all_false_alarms"] == 1
    assert got["image_auroc"] == pytest.approx(5 / 6)
    with pytest.raises(InvalidInputError, match="both"):
        evaluate_history([True], [1.0])


def test_accepting_does_not_wait_for_scikit_learn_to_import() -> None:
    """Why: scikit-learn takes ~0.8 s to import; the first *Accept as normal* of an app
    process paid it, although only the Evaluate page's figures need it."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, padim_core.feedback, inspector_ui.actions; "
            "print(sorted(m for m in ('sklearn', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120, cwd=Path(__file__).parents[1]).stdout
    assert out.strip() == "[]"
