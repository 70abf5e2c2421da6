import copy
import json
import os

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from judging.scorers import (
    Scorer,
    WeightsUnavailable,
    available_scorers,
    clear_scorer_cache,
    get_scorer,
    register_scorer,
)
from judging.scorers.clip import ClipResult, ClipScorer

TINY = "arena-test-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 48, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PROMPTS = ["a red cube", "a photograph of a small dog on a sofa", "blue", "two cats"]


@pytest.fixture(scope="module")
def tiny_model_name(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip_cfg") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="module")
def scorer(tiny_model_name):
    return ClipScorer.from_config(tiny_model_name, "cpu", seed=7, num_workers=2)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_images")
    paths = []
    for i in range(6):
        rng = np.random.default_rng(i)
        size = (64 + 8 * i, 56)
        arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        path = folder / (f"{i}.png" if i % 2 else f"{i}.jpg")
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def clip_score_by_hand(model, image_path, prompt):
    """100 * max(cos, 0) from the model's raw (unnormalised) encode_image / encode_text."""
    size = model.visual.image_size
    preprocess = open_clip.image_transform(
        size, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    with Image.open(image_path) as im:
        pixels = preprocess(im.convert("RGB")).unsqueeze(0)
    tokens = open_clip.tokenize([prompt])
    with torch.no_grad():
        img = model.encode_image(pixels)[0].double().numpy()
        txt = model.encode_text(tokens)[0].double().numpy()
    cos = img @ txt / (np.linalg.norm(img) * np.linalg.norm(txt))
    return 100 * max(cos, 0.0), img / np.linalg.norm(img), cos


@pytest.fixture(scope="module")
def flipped(scorer):
    """The same model with the text projection negated: every cosine changes sign, so
    between the two scorers both signs are covered whatever the random weights."""
    model = copy.deepcopy(scorer.model)
    with torch.no_grad():
        model.text_projection.neg_()
    return ClipScorer.from_model(model, scorer.tokenizer, "cpu")


@pytest.mark.parametrize("which", ["scorer", "flipped"])
def test_score_is_100_times_the_clamped_cosine_of_the_raw_embeddings(request, which, image_files):
    clip = request.getfixturevalue(which)
    items = [(path, PROMPTS[i % len(PROMPTS)]) for i, path in enumerate(image_files)]

    results = clip.score_batch(items)

    assert len(results) == len(items)
    for result, (path, prompt) in zip(results, items):
        expected, _, _ = clip_score_by_hand(clip.model, path, prompt)
        assert isinstance(result, ClipResult)
        assert 0.0 <= result.score <= 100.0
        assert result.score == pytest.approx(expected, abs=1e-4)


def test_both_signs_of_the_cosine_are_covered(scorer, flipped, image_files):
    path, prompt = image_files[0], PROMPTS[0]
    _, _, cos = clip_score_by_hand(scorer.model, path, prompt)
    _, _, cos_flipped = clip_score_by_hand(flipped.model, path, prompt)
    positive, negative = (scorer, flipped) if cos > 0 else (flipped, scorer)

    assert cos == pytest.approx(-cos_flipped, abs=1e-9) and abs(cos) > 1e-6
    assert positive.score_batch([(path, prompt)])[0].score == pytest.approx(100 * abs(cos), abs=1e-4)
    assert negative.score_batch([(path, prompt)])[0].score == 0.0


def test_embeddings_are_unit_float32_image_embeddings(scorer, image_files):
    results = scorer.score_batch([(p, "x") for p in image_files])

    for result, path in zip(results, image_files):
        _, expected, _ = clip_score_by_hand(scorer.model, path, "x")
        assert result.embedding.dtype == np.float32
        assert result.embedding.shape == (TINY_CONFIG["embed_dim"],)
        assert np.linalg.norm(result.embedding) == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(result.embedding, expected, atol=1e-5)


def test_batch_prefetching_and_one_by_one_scoring_agree(scorer, image_files):
    items = [(path, PROMPTS[i % 3]) for i, path in enumerate(image_files)]

    together = scorer.score_batch(items)
    one_by_one = [scorer.score_batch([item])[0] for item in items]
    prefetched = scorer.score_all(items, batch_size=4)
    embedded = scorer.embed_images([path for path, _ in items], batch_size=4)

    for a, b, c, e in zip(together, one_by_one, prefetched, embedded):
        assert a.score == pytest.approx(b.score, abs=1e-4) == pytest.approx(c.score, abs=1e-4)
        assert np.allclose(a.embedding, b.embedding, atol=1e-5)
        assert np.allclose(a.embedding, c.embedding, atol=1e-5)
        assert np.allclose(a.embedding, e, atol=1e-5)


def test_each_prompt_is_encoded_once_across_batches(scorer, image_files, monkeypatch):
    calls = []
    encode_text = scorer.model.encode_text

    def counting_encode_text(tokens):
        calls.append(len(tokens))
        return encode_text(tokens)

    monkeypatch.setattr(scorer.model, "encode_text", counting_encode_text)
    prompts = ["an unseen prompt", "another unseen prompt", "an unseen prompt"]
    first = [(image_files[0], p) for p in prompts]
    second = [(image_files[1], p) for p in reversed(prompts)]

    results = scorer.score_batch(first) + scorer.score_batch(second)

    assert calls == [2]
    for result, (path, prompt) in zip(results, first + second):
        assert result.score == pytest.approx(clip_score_by_hand(scorer.model, path, prompt)[0], abs=1e-4)


def test_a_local_checkpoint_path_loads_through_open_clip(scorer, image_files, tmp_path):
    checkpoint = tmp_path / "tiny.pt"
    torch.save(scorer.model.state_dict(), checkpoint)

    loaded = ClipScorer(TINY, str(checkpoint)).load("cpu")

    ours = loaded.score_batch([(image_files[0], "a red cube")])[0]
    reference = scorer.score_batch([(image_files[0], "a red cube")])[0]
    assert np.allclose(ours.embedding, reference.embedding, atol=1e-6)
    assert ours.score == pytest.approx(reference.score, abs=1e-5)


def test_a_missing_checkpoint_names_the_setting_and_the_path(tiny_model_name):
    with pytest.raises(WeightsUnavailable) as err:
        ClipScorer(tiny_model_name, "/nonexistent/weights/clip.bin").load("cpu")

    message = str(err.value)
    assert "ARENA_CLIP_PRETRAINED" in message
    assert "/nonexistent/weights/clip.bin" in message
    assert "local checkpoint path" in message


def test_the_default_tag_offline_raises_weights_unavailable_instead_of_random_weights(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))

    with pytest.raises(WeightsUnavailable) as err:
        ClipScorer().load("cpu")

    message = str(err.value)
    assert "ARENA_CLIP_PRETRAINED" in message
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message


# -- registry --------------------------------------------------------------------------


def test_the_builtin_scorers_are_registered():
    assert {"clip", "vqa", "fid"} <= set(available_scorers())


def test_get_scorer_loads_once_per_configuration(scorer, tmp_path, image_files):
    checkpoint = tmp_path / "tiny.pt"
    torch.save(scorer.model.state_dict(), checkpoint)
    clear_scorer_cache()
    try:
        first = get_scorer("clip", model_name=TINY, pretrained=str(checkpoint), device="cpu")
        again = get_scorer("clip", model_name=TINY, pretrained=str(checkpoint), device="cpu")
        other = get_scorer("clip", model_name=TINY, pretrained=str(checkpoint), device="cpu", batch_size=3)

        assert first is again
        assert other is not first
        assert first.loaded and first.device == torch.device("cpu")
        assert len(first.score_batch([(image_files[0], "a red cube")])) == 1
    finally:
        clear_scorer_cache()


def test_get_scorer_does_not_cache_a_failed_load(tiny_model_name):
    clear_scorer_cache()
    for _ in range(2):
        with pytest.raises(WeightsUnavailable):
            get_scorer("clip", model_name=tiny_model_name, pretrained="/missing.bin", device="cpu")


def test_an_unknown_scorer_name_is_an_error():
    with pytest.raises(KeyError, match="no-such-scorer"):
        get_scorer("no-such-scorer")


def test_registering_needs_a_free_name():
    class Nameless(Scorer):
        pass

    class Impostor(Scorer):
        name = "clip"

    with pytest.raises(ValueError):
        register_scorer(Nameless)
    with pytest.raises(ValueError):
        register_scorer(Impostor)


# -- settings --------------------------------------------------------------------------


def test_scorer_settings_default_to_the_documented_models(settings):
    from judging.services import scorer_config

    for name in ("ARENA_CLIP_MODEL", "ARENA_CLIP_PRETRAINED", "ARENA_FID_WEIGHTS", "ARENA_DEVICE"):
        if name in os.environ:
            pytest.skip(f"{name} is set in this environment")
    assert scorer_config("clip") == {
        "model_name": "ViT-B-32",
        "pretrained": "laion2b_s34b_b79k",
        "device": "auto",
    }
    assert scorer_config("fid") == {"weights": "", "device": "auto"}
    assert scorer_config("vqa")["model"]
    settings.ARENA_CLIP_PRETRAINED = "/w/clip.bin"
    assert scorer_config("clip")["pretrained"] == "/w/clip.bin"
