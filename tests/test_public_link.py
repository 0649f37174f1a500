"""A public link meets scripts (issue 30): what a request sends never comes back as markup, and no message names a
server path. Through gradio_client against a served page, and through the page's handler and components."""

import gradio as gr
import numpy as np
import pytest
from _page import ui_request
from gradio_client import handle_file
from gradio_client.exceptions import AppError, ValidationError

import app
from repaint import Settings
from repaint.space import BadInput, ServeError, echo, page
from repaint.space.estimate import fmt_seconds
from repaint.space.limits import Limits

MARKUP = '<a href="https://evil.example/">click</a><form action="https://evil.example/"><input></form>'
SMALL = dict(model="bundled", steps=10, jump_length=5, jump_n_sample=2, seed=3, num_samples=1, compare=False)
pytestmark = pytest.mark.usefixtures("service")


def assert_escaped(message: str) -> None:
    assert "<" not in message and ">" not in message, message
    assert "&lt;a href=" in message, message  # the value is named, escaped (and shortened)


def test_echo_quotes_shortens_and_escapes():
    assert echo("bundled") == "'bundled'"
    assert echo(3) == "'3'"
    long = echo("x" * 500)
    assert len(long) <= 2 + 40 and long.endswith("...'")
    assert echo(MARKUP).startswith("'&lt;a href=&quot;https://evil.example/&quot;&gt;")


@pytest.mark.parametrize("field", ["model", "mask", "steps", "seed", "size"])
def test_markup_sent_to_inpaint_comes_back_escaped(client, face, field):
    args = {**SMALL, "size": "auto"} | ({} if field == "mask" else {field: MARKUP})
    with pytest.raises((AppError, ValidationError)) as error:  # a bad number or choice: before it queues
        client.predict(handle_file(str(face)), MARKUP if field == "mask" else "left_half", api_name="/inpaint", **args)
    assert_escaped(str(error.value))


def test_markup_as_the_pages_model_or_preset_comes_back_escaped(face):
    for label in ("Model", "Mask"):  # Gradio's own check of a choice, as the page's components make it
        dropdown = page.known_choice(gr.Dropdown(["bundled"], value="bundled", label=label))
        refused = dropdown.preprocess(MARKUP)
        assert isinstance(refused, BadInput)
        assert_escaped(refused.message)
        with pytest.raises(gr.Error) as error:  # what the page's handlers then say
            app.estimate_text(refused, 10, 5, 2, 1, False)
        assert_escaped(error.value.message)
    editor = {"background": np.zeros((32, 32, 4), np.uint8), "layers": [np.full((32, 32, 4), 255, np.uint8)]}
    handler = app.run(editor, "draw", MARKUP, 10, 5, 2, 3, False, 1, False, False, ui_request("markup"))
    with pytest.raises(gr.Error) as error:  # the model typed where Hub ids may be (allow_custom_value)
        next(handler)
    assert_escaped(error.value.message)


def test_a_file_that_is_not_an_image_is_refused_without_a_server_path(client, face, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n" * 10)
    for image, mask in ((text, "left_half"), (face, text)):
        mask = handle_file(str(mask)) if mask is text else mask
        with pytest.raises((AppError, ValidationError)) as error:
            client.predict(handle_file(str(image)), mask, api_name="/inpaint", **SMALL)
        message = str(error.value)
        assert "not a readable image" in message or "could not be read" in message, message
        assert "/" not in message.replace("handle_file(path)", ""), message  # no path of the server's
    with pytest.raises(gr.Error) as error:  # the photo button
        app.load_photo(str(text))
    assert "/" not in error.value.message and "cannot be used" in error.value.message


def test_the_mask_presets_refusal_escapes_too():
    with pytest.raises(ServeError) as error:
        app.SERVICE.api_request(
            image=np.zeros((8, 8, 3), np.uint8), mask=MARKUP, model="bundled", settings=None, upload_folder="/nowhere"
        )
    assert_escaped(str(error.value))


# ------------------------------------------------------------------------------------------- work per request
ABSURD = dict(SMALL, steps=1000, jump_length=1, jump_n_sample=20, num_samples=4, compare=True)  # 19,981 calls x 8 rows


def test_limits_have_their_defaults_and_follow_the_environment():
    assert Limits() == Limits.from_env({})
    assert Limits.from_env({"REPAINT_RUN_S_MAX": "60"}).run_s_max == 60.0
    with pytest.raises(ValueError, match="REPAINT_RUN_S_MAX"):
        Limits.from_env({"REPAINT_RUN_S_MAX": "a lot"})


def test_the_pages_defaults_and_the_papers_settings_fit_under_the_default_cap_and_an_absurd_run_does_not():
    slot = app.SERVICE.slot
    assert slot.limits == Limits() and not slot.has_gpu
    paper = Settings(steps=250, jump_length=10, jump_n_sample=10)
    for settings in (app.DEFAULTS, paper):
        assert slot.why_not("bundled", settings) is None, settings
    why = slot.why_not("bundled", Settings(**{k: v for k, v in ABSURD.items() if k != "model"}))
    assert "19,981 calls" in why and f"at most {fmt_seconds(Limits().run_s_max)}" in why and "fewer steps T" in why


def test_an_absurd_request_is_refused_before_it_queues_while_another_run_holds_the_worker(client, face):
    """The only worker is busy with a paper-default run; the absurd request is still refused at once (Gradio's
    validator runs when a request joins the queue), naming its estimate, the cap and what to lower."""
    busy = client.submit(
        handle_file(str(face)), "left_half", api_name="/inpaint", **dict(SMALL, steps=250, jump_length=10)
    )
    try:
        with pytest.raises(
            ValidationError, match=rf"19,981 calls.*at most {fmt_seconds(Limits().run_s_max)}.*fewer steps T"
        ):
            client.predict(handle_file(str(face)), "left_half", api_name="/inpaint", **ABSURD)
        assert not busy.done()  # refused while the worker was still busy
    finally:
        busy.cancel()
