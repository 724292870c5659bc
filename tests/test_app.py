"""The app page: loads, and moving a group slider changes the views it shows."""

from streamlit.testing.v1 import AppTest


def run_app():
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def shown_images(at):
    """Media URLs of every image on the page: they are content hashes."""
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def test_app_loads_and_lists_datasets():
    at = run_app()
    assert "amortised invariance learning" in at.title[0].value
    assert "sklearn-digits" in at.selectbox[0].options


def test_group_sliders_follow_the_space_and_drive_the_views():
    at = run_app()
    at.selectbox[0].select("sklearn-digits").run()
    assert [s.label for s in at.slider] == ["crop", "flip", "color", "blur"]
    before = shown_images(at)
    assert len(before) == 3 * 8  # original and two views of eight examples
    for slider in at.slider:
        slider.set_value(0.0)
    at.run()
    assert not at.exception
    after = shown_images(at)
    original = slice(0, 8)
    assert after[original] == before[original] and after[8:] != before[8:]
    assert after[8:16] == after[16:24] == after[original]  # all groups off: views = original


def test_audio_datasets_get_audio_sliders_players_and_spectrograms():
    at = run_app()
    at.selectbox[0].select("asterisk-digits").run()
    assert not at.exception, at.exception
    assert [s.label for s in at.slider] == ["pitch", "time", "noise", "mask", "filter"]
    assert len(at.get("audio")) == 4
    assert len(shown_images(at)) == 8  # original and one view, as log-mel, per clip
