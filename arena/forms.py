"""Forms of the staff study pages. Validation lives here; saving is `arena.studies`."""

from __future__ import annotations

from django import forms
from django.contrib.auth.models import Group, User

from .models import Criterion, Generator, GoldTask, Output, Study, VoteKind
from .studies import category_choices_get, generator_choices_get, study_capacity_get

CHECKS = forms.CheckboxSelectMultiple


class StudySetupForm(forms.ModelForm):
    vote_kinds = forms.MultipleChoiceField(choices=VoteKind.choices, widget=CHECKS, required=False)
    generators = forms.ModelMultipleChoiceField(queryset=Generator.objects.all(), widget=CHECKS, required=False)
    categories = forms.MultipleChoiceField(
        choices=(), widget=CHECKS, required=False, help_text="None picked: every category of the generators picked.",
    )
    criteria = forms.ModelMultipleChoiceField(queryset=Criterion.objects.all(), widget=CHECKS, required=False)
    new_criterion_name = forms.CharField(required=False, max_length=120, label="Add a criterion: name")
    new_likert_question = forms.CharField(required=False, max_length=300, label="Question for ratings 1–5")
    new_binary_question = forms.CharField(required=False, max_length=300, label="Question for good / bad")
    new_pairwise_question = forms.CharField(required=False, max_length=300, label="Question for pairwise")
    prolific_completion_url = forms.URLField(required=False, assume_scheme="https", label="Prolific completion URL")
    allowed_users = forms.ModelMultipleChoiceField(queryset=User.objects.order_by("username"), widget=CHECKS, required=False)
    allowed_groups = forms.ModelMultipleChoiceField(queryset=Group.objects.order_by("name"), widget=CHECKS, required=False)

    class Meta:
        model = Study
        fields = [
            "name", "slug", "description", "instructions", "vote_kinds", "criteria", "generators", "categories",
            "quota_per_annotator", "overlap_target", "calibration_items", "calibration_annotators",
            "min_votes_per_generator", "bootstrap_unit", "gold_rate", "sampler", "reveal_after_vote",
            "display_long_side", "display_square", "is_open", "public_leaderboard", "both_bad_as_tie",
            "completion_code", "prolific_completion_url", "allowed_users", "allowed_groups",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "instructions": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["generators"].choices = generator_choices_get()
        self.fields["categories"].choices = category_choices_get()
        self.fields["criteria"].label_from_instance = lambda c: c.name
        self.fields["allowed_users"].label_from_instance = lambda u: u.get_username()
        self.capacity = None

    def clean_gold_rate(self):
        rate = self.cleaned_data["gold_rate"]
        if not 0 <= rate <= 1:
            raise forms.ValidationError("The gold rate is a share of tasks, between 0 and 1.")
        return rate

    def clean(self):
        data = super().clean()
        criteria = [c.name for c in data.get("criteria") or []]
        if data.get("new_criterion_name"):
            criteria.append(data["new_criterion_name"])
        gens = data.get("generators")
        gold = 0
        withdrawn = prompt_ids = ()
        if self.instance.pk:
            prompt_ids = list(self.instance.prompts.values_list("id", flat=True))
            gold = GoldTask.objects.filter(study=self.instance, kind__in=data.get("vote_kinds") or []).count()
            withdrawn = set(self.instance.withdrawn_outputs.values_list("output_id", flat=True))
        self.capacity = study_capacity_get(
            generator_ids=[g.pk for g in gens] if gens else [], categories=data.get("categories") or [],
            kinds=data.get("vote_kinds") or [], criteria=criteria, quota=data.get("quota_per_annotator") or 0,
            overlap=data.get("overlap_target") or 0, calibration_items=data.get("calibration_items") or 0,
            calibration_annotators=data.get("calibration_annotators") or 0, gold=gold, withdrawn=withdrawn,
            prompt_ids=prompt_ids,
        )
        for name, message in self.capacity.errors.items():
            if name in self.fields and name not in self.errors:
                self.add_error(name, message)
        return data

    def new_criterion(self) -> dict | None:
        d = self.cleaned_data
        if not d.get("new_criterion_name"):
            return None
        return {"name": d["new_criterion_name"], "likert_question": d.get("new_likert_question", ""),
                "binary_question": d.get("new_binary_question", ""), "pairwise_question": d.get("new_pairwise_question", "")}


class GoldTaskForm(forms.Form):
    kind = forms.ChoiceField(choices=VoteKind.choices)
    criterion = forms.ModelChoiceField(queryset=Criterion.objects.none())
    output = forms.ModelChoiceField(queryset=Output.objects.none(), widget=forms.RadioSelect, label="Image")
    other_output = forms.ModelChoiceField(queryset=Output.objects.none(), required=False, widget=forms.RadioSelect,
                                          label="Second image (pairwise)")
    expected_answer = forms.ChoiceField(choices=[
        ("Rating 1–5 (±1 accepted)", [(str(n), str(n)) for n in range(1, 6)]),
        ("Good / bad", [("good", "Good"), ("bad", "Bad")]),
        ("Pairwise", [("output", "First image better"), ("other_output", "Second image better"), ("tie", "Tie")]),
    ])

    def __init__(self, *args, study: Study, outputs, **kwargs):
        super().__init__(*args, **kwargs)
        ids = [o.pk for o in outputs]
        self.fields["criterion"].queryset = study.criteria.all()
        self.fields["output"].queryset = Output.objects.filter(pk__in=ids)
        self.fields["other_output"].queryset = Output.objects.filter(pk__in=ids)
        # Question checks have no single expected answer: they take no gold tasks.
        self.fields["kind"].choices = [
            (k, dict(VoteKind.choices)[k]) for k in study.vote_kinds if k in VoteKind.values and k != VoteKind.QUESTIONS
        ]

    def clean(self):
        data = super().clean()
        kind, answer = data.get("kind"), (data.get("expected_answer") or "").strip().lower()
        if kind == VoteKind.PAIRWISE:
            if not data.get("other_output"):
                self.add_error("other_output", "A pairwise gold task needs a second image.")
            elif data.get("output") and data["other_output"].prompt_id != data["output"].prompt_id:
                self.add_error("other_output", "Both images of a pairwise gold task must answer the same prompt.")
            if answer not in ("output", "other_output", "tie"):
                self.add_error("expected_answer", "For pairwise, answer first image better, second image better or tie.")
        elif kind == VoteKind.LIKERT and answer not in {"1", "2", "3", "4", "5"}:
            self.add_error("expected_answer", "For a rating, answer a number from 1 to 5 (±1 is accepted).")
        elif kind == VoteKind.BINARY and answer not in ("good", "bad"):
            self.add_error("expected_answer", "For good / bad, answer good or bad.")
        if kind != VoteKind.PAIRWISE:
            data["other_output"] = None
        data["expected_answer"] = answer
        return data


class WithdrawForm(forms.Form):
    reason = forms.CharField(max_length=300, required=False)
    action = forms.ChoiceField(choices=[("withdraw", "withdraw"), ("restore", "restore")], initial="withdraw")
