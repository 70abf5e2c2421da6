"""The in-process judge: a transformers image-text-to-text model loaded by the path VQAScore uses,
run by a real worker on the GPU queue. The model here is tiny and random: its answers cannot be
read, and they are recorded as failures with their text, never as scores."""

import json
import time

import pytest
import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from judging.models import JudgeReport, JudgeRun, JudgeVote
from tests.conftest import api_client_for, client_for
from tests.judging.test_vqa_scorer import CHAT_TEMPLATE, build_tokenizer

QUESTIONS = ["Is there a square?"]


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory):
    tokenizer = build_tokenizer()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_judge")
    LlavaForConditionalGeneration(config).eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def text_only_dir(tmp_path_factory):
    tokenizer = build_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    path = tmp_path_factory.mktemp("text_only")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_judge_env(tiny_judge_dir, monkeypatch, settings):
    judges = [{"name": "tiny", "backend": "transformers", "model": str(tiny_judge_dir), "max_tokens": 6}]
    monkeypatch.setenv("ARENA_JUDGES", json.dumps(judges))  # read by the worker process
    monkeypatch.setenv("ARENA_DEVICE", "cpu")
    monkeypatch.setenv("ARENA_SCORERS", "")  # no safety screen to wait for before images can be shown
    settings.ARENA_JUDGES = judges
    return judges


@pytest.mark.e2e
@pytest.mark.worker_queues("gpu")
def test_a_tiny_random_model_judges_on_the_gpu_queue_and_its_unreadable_answers_are_failures(
    tiny_judge_env, celery_worker_process, make_study, admin_user, researcher,
):
    from arena.models import Prompt

    study = make_study(prompts=1, generators=["zebrafusion-xl", "quokka-diffusion"], kinds=("pairwise", "likert"),
                       display_long_side=64)
    Prompt.objects.update(questions=QUESTIONS)
    client = api_client_for(admin_user)
    res = client.post(f"/api/studies/{study.slug}/judge-runs/", {"judge": "tiny"}, format="json")
    assert res.status_code == 202
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        run = client.get(res.headers["Location"]).json()
        if run["status"] in ("done", "failed"):
            break
        time.sleep(0.5)
    log = celery_worker_process.log_path.read_text()
    assert run["status"] == "done", (run["message"], log[-3000:])
    # 1 pair (both orders) + 2 ratings + 2 questions, each asked again once: nothing parsed.
    assert run["verdicts"] == run["failures"] == 5 and run["requests"] == 2 * (2 + 2 + 2)
    assert run["completion_tokens"] > 0 and run["prompt_tokens"] > 0
    # The run is marked done before the task returns; the worker logs its success just after.
    deadline = time.monotonic() + 30
    while "succeeded" not in log and time.monotonic() < deadline:
        time.sleep(0.2)
        log = celery_worker_process.log_path.read_text()
    assert "judging.judge_study" in log and "succeeded" in log
    votes = list(JudgeVote.objects.all())
    assert all(v.failed and v.score is None and v.choice == "" for v in votes)
    assert all("--- asked again ---" in v.raw_text for v in votes)
    pair = next(v for v in votes if v.kind == "pairwise")
    assert pair.consistent is None and pair.choice_first_order == pair.choice_second_order == ""
    shown = JudgeReport.objects.get(study=study).data["judges"][0]
    assert shown["failures"] == shown["verdicts"] == 3 and shown["questions"] == 2
    assert shown["pairwise_accuracy"]["value"] is None and shown["position"]["pairs"] == 0
    assert all(r["judge_bt"] is None and r["judge_likert"] is None for r in shown["ranking"])
    page = client_for(researcher).get(f"/leaderboard/{study.slug}/").content.decode()
    assert 'data-judge="tiny"' in page and JudgeRun.objects.get().config["backend"] == "transformers"


@pytest.mark.django_db
def test_a_model_that_is_not_an_image_text_model_is_a_job_error_naming_the_setting(
    text_only_dir, make_study, settings, django_capture_on_commit_callbacks,
):
    from judging.judge_runs import judge_run_enqueue

    settings.ARENA_JUDGES, settings.ARENA_JUDGE_URL = [], ""
    settings.ARENA_JUDGE_MODEL, settings.ARENA_DEVICE = str(text_only_dir), "cpu"
    study = make_study(prompts=1, generators=["zebrafusion-xl", "quokka-diffusion"], kinds=("likert",))
    with django_capture_on_commit_callbacks(execute=True):
        run = judge_run_enqueue(study=study, judge="judge")
    run.job.refresh_from_db()
    assert run.job.status == "failed"
    assert "ARENA_JUDGE_MODEL" in run.job.message and "image-text-to-text" in run.job.message
    assert str(text_only_dir) in run.job.message
    assert JudgeVote.objects.count() == 0 and not JudgeReport.objects.exclude(data__judges=[]).exists()
