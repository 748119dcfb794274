"""Sequential recommendation as search: user context -> prompt; the next item is the target.

Settings:

* ``transductive``: the core split (``make_split(ds, "auto")``); targets are catalog items the
  training data has seen;
* ``held_out_users``: the core split's test/valid rows of users who are never in SFT/GRPO
  training (a seeded fraction of all users, :func:`held_out_user_mask`); the writer meets their
  histories for the first time at evaluation (the inductive setting over users);
* ``held_out_items`` (old name ``inductive``): the core's new-item split (``make_split(ds, "new_item", frac=0.2, seed=0)``);
  its held-out items never appear in training, and the valid/test tasks keep only rows whose
  target is such a new item. The retriever indexes the whole catalog (new items included):
  text search is what makes them reachable at all.

Training tasks never look past the training data: each user's last *training* item is the
target and the items before it are the context (Rec-R1 trains on the same kind of prompt it
is tested on). Evaluation tasks use the split's valid/test rows (history = the split's).

The context shows the ``max_history`` most recent items as short titles (plus a review
snippet where the dataset has reviews for that user and item).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from textrec.query.catalog import Catalog
from textrec.text.sanitize import clean_text

if TYPE_CHECKING:  # pragma: no cover
    from textrec.data.dataset import RecDataset
    from textrec.data.splits import Split
    from textrec.prompts import Template

SETTINGS = ("transductive", "held_out_users", "held_out_items", "inductive")
#: the new-item split's setting under its old name (kept so that old commands and results still read)
SETTING_ALIASES = {"inductive": "held_out_items"}
#: users never in SFT/GRPO training (seeded); the held_out_users setting evaluates exactly them
HELD_OUT_USERS_FRAC = 0.2
HELD_OUT_USERS_SEED = 0
DEFAULT_TEMPLATES = "query/recr1"
DEFAULT_TEMPLATE_ID = "query-plain"
# How a dataset's items read in a prompt: (domain noun, verb).
DOMAIN_WORDS = {"ml-100k": ("movies", "watched")}
DEFAULT_DOMAIN = ("products", "bought")
MAX_CONTEXT_LINE_CHARS = 300


@dataclass
class QueryTask:
    """One user context and the item that followed it."""

    user: int
    history: np.ndarray  # every item the user had before the target (masked in ranking)
    target: int
    is_new: bool = False
    context: list[str] = field(default_factory=list)  # the recent items as shown in the prompt

    def raw_query(self) -> str:
        """The raw-history baseline query: the context titles concatenated."""
        return " ".join(self.context)


def canonical_setting(setting: str) -> str:
    """The setting's current name (``inductive`` -> ``held_out_items``); unknown names raise."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting '{setting}'; choose from {SETTINGS}")
    return SETTING_ALIASES.get(setting, setting)


def split_for(ds: RecDataset, setting: str) -> Split:
    """The core split a setting uses (transductive and held_out_users = ``auto``; held_out_items
    = ``new_item`` 0.2/seed 0)."""
    from textrec.data.splits import make_split

    setting = canonical_setting(setting)
    if setting in ("transductive", "held_out_users"):
        return make_split(ds, "auto")
    return make_split(ds, "new_item", frac=0.2, seed=0)


def held_out_user_mask(n_users: int, frac: float = HELD_OUT_USERS_FRAC, seed: int = HELD_OUT_USERS_SEED
                       ) -> np.ndarray:
    """Boolean mask over user indexes: ``True`` for the seeded ``frac`` of users kept out of training.

    A function of (number of users, frac, seed) only, so training and the benchmark agree on the
    set without sharing a file.
    """
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"held-out user fraction must be in [0, 1), got {frac}")
    mask = np.zeros(int(n_users), dtype=bool)
    n = int(round(frac * n_users))
    if n:
        mask[np.random.default_rng(seed).choice(int(n_users), size=n, replace=False)] = True
    return mask


def held_out_frac_for(setting: str, frac: float | None = None) -> float:
    """The fraction of users kept out of training: ``frac`` if given (a recipe's
    ``held_out_users_frac``), else :data:`HELD_OUT_USERS_FRAC` for the ``held_out_users`` setting
    (which needs some) and 0 for the others."""
    if frac:
        return float(frac)
    return HELD_OUT_USERS_FRAC if canonical_setting(setting) == "held_out_users" else 0.0


def drop_users(tasks: Sequence[QueryTask], mask: np.ndarray) -> list[QueryTask]:
    """The tasks whose user is not marked in ``mask`` (e.g. the held-out users)."""
    return [t for t in tasks if not mask[int(t.user)]]


class ContextBuilder:
    """Turns a history into the list of lines a prompt shows (titles + optional review snippets)."""

    def __init__(self, catalog: Catalog, ds: RecDataset | None = None, max_history: int = 8,
                 review_words: int = 12):
        self.catalog = catalog
        self.max_history = int(max_history)
        self.review_words = int(review_words)
        self._reviews: dict[tuple[int, int], str] = {}
        if ds is not None and ds.reviews is not None and len(ds.reviews) and "text" in ds.reviews.columns:
            r = ds.reviews
            for u, i, t in zip(r["user"].to_numpy(), r["item"].to_numpy(), r["text"].astype(str)):
                if t.strip():
                    self._reviews[(int(u), int(i))] = " ".join(t.split()[: self.review_words])

    def __call__(self, user: int, history: Sequence[int]) -> list[str]:
        recent = list(history)[-self.max_history:] if self.max_history > 0 else []
        lines = []
        for i in recent:
            title = self.catalog.titles[int(i)]
            snippet = self._reviews.get((int(user), int(i)))
            # data text enters the prompt here: no chat markers, control characters or megabyte titles
            lines.append(clean_text(f'{title} (review: "{snippet}")' if snippet else title, MAX_CONTEXT_LINE_CHARS))
        return lines


def training_tasks(split: Split, builder: ContextBuilder, min_history: int = 1) -> list[QueryTask]:
    """One task per user: target = last training item, context = the training items before it."""
    out = []
    for u, seq in enumerate(split.train_sequences()):
        if len(seq) < min_history + 1:
            continue
        hist = np.asarray(seq[:-1], dtype=np.int64)
        out.append(QueryTask(user=u, history=hist, target=int(seq[-1]), context=builder(u, hist)))
    return out


def eval_tasks(split: Split, builder: ContextBuilder, part: str = "test", only_new: bool | None = None
               ) -> list[QueryTask]:
    """Tasks from the split's valid or test rows (first target of each row).

    ``only_new=True`` keeps rows whose target is a held-out item (inductive), ``False`` the
    others, ``None`` all.
    """
    es = {"valid": split.valid, "test": split.test}.get(part)
    if es is None:
        raise ValueError(f"part must be 'valid' or 'test', not {part!r}")
    out = []
    for r in range(len(es)):
        new = bool(es.is_new[r]) if es.is_new is not None else False
        if only_new is not None and new != only_new:
            continue
        u = int(es.users[r])
        hist = np.asarray(es.history(r), dtype=np.int64)
        out.append(QueryTask(user=u, history=hist, target=int(es.targets(r)[0]), is_new=new,
                             context=builder(u, hist)))
    return out


def make_tasks(ds: RecDataset, setting: str, part: str, catalog: Catalog | None = None,
               max_history: int = 8, split: Split | None = None,
               held_out_users_frac: float | None = None) -> list[QueryTask]:
    """Tasks for a dataset, setting (see ``SETTINGS``) and part (train | valid | test).

    The users :func:`held_out_user_mask` holds out at :func:`held_out_frac_for` ``(setting,
    held_out_users_frac)`` are never in the training tasks, in any setting; the ``held_out_users``
    setting's evaluation tasks are exactly their rows.
    """
    setting = canonical_setting(setting)
    split = split if split is not None else split_for(ds, setting)
    builder = ContextBuilder(catalog or Catalog.from_dataset(ds, verbose=False), ds, max_history=max_history)
    frac = held_out_frac_for(setting, held_out_users_frac)
    held_out = held_out_user_mask(ds.n_users, frac) if frac else None
    if part == "train":
        tasks = training_tasks(split, builder)
        return drop_users(tasks, held_out) if held_out is not None else tasks
    tasks = eval_tasks(split, builder, part, only_new=True if setting == "held_out_items" else None)
    if setting == "held_out_users":
        tasks = [t for t in tasks if held_out[int(t.user)]]
    return tasks


def subsample(tasks: list[QueryTask], n: int | None, seed: int = 0) -> list[QueryTask]:
    """A fixed seeded subsample (in original order); all tasks when ``n`` is None or larger."""
    if n is None or n >= len(tasks):
        return list(tasks)
    rows = np.sort(np.random.default_rng(seed).choice(len(tasks), size=n, replace=False))
    return [tasks[i] for i in rows]


def load_template(template_id: str = DEFAULT_TEMPLATE_ID, family: str = DEFAULT_TEMPLATES) -> Template:
    """One query template by id from ``prompts/<family>.yaml``."""
    from textrec.prompts import load_templates

    templates = load_templates(family)
    for t in templates:
        if t.id == template_id:
            return t
    raise ValueError(f"template '{template_id}' not in family '{family}' (have {[t.id for t in templates]})")


def prompt_messages(task: QueryTask, template: Template, dataset_name: str = "") -> list[dict[str, str]]:
    """Chat messages (system + user) asking for a query for this task."""
    domain, action = DOMAIN_WORDS.get(dataset_name, DEFAULT_DOMAIN)
    history = "\n".join(f"{i + 1}. {line}" for i, line in enumerate(task.context)) or "(nothing yet)"
    user = template.render_source(history=history, n=len(task.context), domain=domain, action=action)
    msgs = []
    system = template.extra.get("system")
    if system:
        msgs.append({"role": "system", "content": str(system)})
    msgs.append({"role": "user", "content": user})
    return msgs


def is_bare(template: Template) -> bool:
    """Whether a template is a bare completion prompt (``chat: false``): no system turn, no chat markup."""
    return template.extra.get("chat", True) is False


def prompt_text(task: QueryTask, template: Template, tokenizer: Any, dataset_name: str = "",
                max_tokens: int | None = None) -> str:
    """The prompt string for one task: the filled source for a bare template, else the chat rendering.

    A bare prompt is about a third of the chat prompt's length (the system turn and the chat
    markup go), and prompt length is what a CPU GRPO step pays for. ``max_tokens`` caps the
    prompt (see :func:`cap_context`); ``None`` leaves it whole.
    """
    if max_tokens is not None:
        task = cap_context(task, template, tokenizer, dataset_name, max_tokens)
    return _render(task, template, tokenizer, dataset_name)


def _render(task: QueryTask, template: Template, tokenizer: Any, dataset_name: str) -> str:
    if is_bare(template):
        domain, action = DOMAIN_WORDS.get(dataset_name, DEFAULT_DOMAIN)
        history = "\n".join(f"- {line}" for line in task.context) or "(nothing yet)"
        return template.render_source(history=history, n=len(task.context), domain=domain, action=action)
    return render_prompt(prompt_messages(task, template, dataset_name), tokenizer)


def prompt_tokens(text: str, tokenizer: Any) -> int:
    """How many tokens a prompt string is, counted as generation feeds it (no special tokens added)."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def cap_context(task: QueryTask, template: Template, tokenizer: Any, dataset_name: str, max_tokens: int
                ) -> QueryTask:
    """The task with its context shortened until its prompt is at most ``max_tokens`` tokens.

    The oldest lines go first (the next item follows the most recent ones); if the newest line
    alone is still too long, its end is cut. Prompt length is what a step and a generation pay
    for, and a catalog title can be arbitrarily long. Raises ``ValueError`` when the template
    without any history already exceeds the cap.
    """
    if max_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1, got {max_tokens}")
    lines = list(task.context)
    n = prompt_tokens(_render(task, template, tokenizer, dataset_name), tokenizer)
    if n <= max_tokens:
        return task
    while len(lines) > 1 and n > max_tokens:
        lines.pop(0)
        n = prompt_tokens(_render(replace(task, context=lines), template, tokenizer, dataset_name), tokenizer)
    if n > max_tokens and lines:
        ids = tokenizer(lines[0], add_special_tokens=False)["input_ids"]
        keep = len(ids) - (n - max_tokens)
        while keep > 0 and n > max_tokens:  # decoding and re-encoding may merge tokens: re-check
            lines = [tokenizer.decode(ids[:keep], skip_special_tokens=True).strip()]
            n = prompt_tokens(_render(replace(task, context=lines), template, tokenizer, dataset_name), tokenizer)
            keep -= 1
        if n > max_tokens:
            lines = []
            n = prompt_tokens(_render(replace(task, context=lines), template, tokenizer, dataset_name), tokenizer)
    if n > max_tokens:
        raise ValueError(f"template '{template.id}' alone takes {n} prompt tokens, more than "
                         f"max_prompt_tokens={max_tokens}")
    return replace(task, context=lines)


def render_prompt(messages: list[dict[str, str]], tokenizer: Any) -> str:
    """The prompt string: the tokenizer's chat template when it has one, else a plain layout."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(parts) + "\nassistant:"


def to_hf_dataset(tasks: Sequence[QueryTask], template: Template, tokenizer: Any, dataset_name: str = "",
                  max_prompt_tokens: int | None = None):
    """A ``datasets.Dataset`` for TRL: ``prompt`` (string, capped at ``max_prompt_tokens``) plus
    ``target``, ``history``, ``user`` and ``context`` (the titles uncapped: a chooser's query is
    built from them as at evaluation)."""
    import datasets

    return datasets.Dataset.from_dict({
        "prompt": [prompt_text(t, template, tokenizer, dataset_name, max_prompt_tokens) for t in tasks],
        "target": [int(t.target) for t in tasks],
        "history": [[int(i) for i in t.history] for t in tasks],
        "user": [int(t.user) for t in tasks],
        "context": [list(t.context) for t in tasks],
    })
