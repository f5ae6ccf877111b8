"""Table 1: image classification by vanilla, MAXL, vanilla+iFiLM, Meta-Neighborhoods and MN+iFiLM on one backbone.

Protocol (the same for every method, so only the method differs):

* a seeded validation split is held out of the training split (10 %, at most 5000 images); the test split is
  touched once, at the end;
* ``fit`` with AdamW (weight decay as ``MetaNeighborhoods.parameter_groups``), gradients clipped to +-10 by value, the
  learning rate x0.1 after 2/3 of the epochs (``lr_drop_at``); augmentation (the data set's own, or the authors'
  pipeline) on the training batches only; ``preset="paper"`` sets the authors' protocol (``presets.py``);
* the indices of the training and validation images and the input normalisation are recorded (``split.json``), and
  the provenance, seeds, inputs and classes of the run (``run.json``, see ``run_record.py``);
* every epoch appends a row to ``metrics.csv`` (training loss, the objective the method minimises, MAXL's auxiliary
  terms included; validation loss, the cross-entropy of the class prediction for every method; validation accuracy,
  learning rate, seconds) and, when TensorBoard is installed, writes the same scalars to ``tensorboard/``;
* after every epoch the validation accuracy and loss are measured and the best weights so far (highest accuracy,
  ties to the lower loss) are saved as checkpoint ``best`` (``best.json`` + safetensors, see ``checkpoint.py``);
  the test accuracy is that of the best checkpoint, reloaded from disk;
* after every epoch the whole training state is saved as checkpoint ``last``: ``resume_classification`` (CLI
  ``--resume DIR``) continues a killed run and ends exactly where the uninterrupted run would have;
* under ``torchrun`` every process trains on its slice of each global batch of ``batch_size`` images
  (DistributedDataParallel); rank 0 alone validates, tests, logs and writes. BatchNorm statistics are those of
  each process's slice (not synchronised), so a multi-process run equals a one-process run exactly only for
  backbones without BatchNorm; slot-dropout masks and augmentation are drawn per process.

Every method uses the cosine classifier (tau learned, init 10) on the backbone's features. The Meta-Neighborhoods
settings follow the authors' image code, see ``image_methods.IMAGE_CONFIG``; the run folder's layout is
``runs.py``'s. The dictionary size is not given in the paper's main text; our default is ``NEIGHBOURS_PER_CLASS``
(10) slots per class: 100 for 10-class sets. MAXL (``maxl.py``) trains the vanilla network with a label generator
beside it, through the same loop and protocol; its fixed settings are recorded in config.json under ``maxl``, psi
with the arguments.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from .. import __version__, checkpoint, distributed, maxl, runs
from ..backbones import available_backbones
from ..callbacks import Callback, History, MetricsLog, Progress, TensorBoardLog, tensorboard_available
from ..config import (GRAD_CLIP, NEIGHBOURS_PER_CLASS, PATH_FIELDS, RUN_DEFAULTS, VALIDATION_FRACTION,
                      VALIDATION_MAX, ClassificationConfig)
from ..datasets.images import ImageDataset, available_image_datasets, load_image_dataset
from ..image_methods import (IFILM_WHERE, IMAGE_CONFIG, METHOD_NAMES, METHODS, BestCheckpoint, build_model,
                             build_model_args, check_settings, init_keys_from_features, load_checkpoint,
                             unused_settings)
from ..io import RunFolderError, inner_folder, prepare_out_dir, read_json_object, reading, write_json, write_text
from ..launch import torchrun_rank
from ..presets import check_preset, paper_settings
from ..run_record import RUN, image_inputs, write_run_record
from ..run_files import BEST, COMPARISON_JSON, COMPARISON_MD, CONFIG, LAST, METRICS, METRICS_CSV, SPLIT, TENSORBOARD
from ..runs import METHOD_SETTINGS, Split, write_split
from ..training import fit, resolve_device, torch_threads
from ..training_state import OptimizerSpec, check_configuration, check_processes
from ..validation import ConfigError
from .image_data import Splits, batches, check_key_images, evaluate, split_validation, training_images
from .reports import markdown_table

LOGGER = logging.getLogger(__name__)
SETTLED_STEPS = 100  # optimiser steps over which BatchNorm's running statistics follow the weights (a trial: 16 do not)
RELOCATABLE = ("device", *PATH_FIELDS)  # settings a resumed run may change: they do not alter results
MAXL_SETTINGS = {"meta_gradient": "second order", "lookahead_step_size": maxl.STEP_SIZE,
                 "entropy_weight": maxl.ENTROPY_WEIGHT, "generator_lr_scale": maxl.GENERATOR_LR_SCALE}
FIXED = {METHOD_SETTINGS: ("dictionary", {name: value for name, value in IMAGE_CONFIG.to_dict().items()  # not the
                                         if name not in ("dictionary_size", "key_init")}),  # two each run sets
         "ifilm_where": ("ifilm", IFILM_WHERE), "maxl": ("auxiliary", MAXL_SETTINGS)}  # by the part that uses each


# ---------------------------------------------------------------------------------------------------
# Runs


def _check_names(dataset: str, backbone: str, method: str) -> None:
    """Fail on a misspelt name before minutes of data loading, listing the valid ones."""
    for option, kind, name, known in (("dataset", "image data set", dataset, available_image_datasets()),
                                      ("backbone", "backbone", backbone, available_backbones()),
                                      ("method", "method", method, METHOD_NAMES)):
        if name not in known:
            raise ConfigError(f"unknown {kind} {name!r}; choose one of {', '.join(known)}", option)


def _run_config(config: ClassificationConfig, model_args: dict | None = None, recorded: dict | None = None) -> dict:
    """The arguments and ``fixed_choices`` (``recorded``: a resumed run's config.json, whose choices it keeps)."""
    return {**asdict(config), **({"model": model_args} if model_args is not None else {}),
            **fixed_choices(config.method, recorded), "milestones": _milestones(config), "version": __version__}


def fixed_choices(method, recorded: dict | None = None) -> dict:
    """The choices no option sets that ``method`` uses (else every method's), and those ``recorded`` beside them."""
    spec = METHODS.get(method) if isinstance(method, str) else None
    return {**{name: value for name, (part, value) in FIXED.items() if not spec or getattr(spec, part)
               or name in (recorded or {})}, "optimizer": "AdamW", "grad_clip_value": GRAD_CLIP,
            "validation_fraction": VALIDATION_FRACTION, "validation_max": VALIDATION_MAX}


def _milestones(config: ClassificationConfig) -> list[int]:
    return [round(config.lr_drop_at * config.epochs)]


def _run_record(config: ClassificationConfig, dataset: ImageDataset) -> dict:
    """run.json's seeds (all of them ``config.seed``), and the inputs and classes the network expects."""
    seeds = {name: config.seed for name in ("seed", "validation_split", "torch", "batches", "key_init")}
    return {"seeds": seeds, "dataset": config.dataset, "processes": distributed.world_size(),
            "classes": list(dataset.classes),
            "input": image_inputs(dataset.train.images.shape, dataset.mean, dataset.std, dataset.pixels)}


def _training_seconds(loggers: dict) -> float:
    """The epochs' seconds (training and validation), those of a killed process's checkpointed epochs too: what
    the method cost, whether it ran at once or was resumed, without the one-off start-up of a first method (nor
    the pass that starts mn's keys at training features, nor the test)."""
    return round(sum(row["seconds"] for row in loggers["metrics_csv"].rows), 2)


def _loggers(out: Path, history: History) -> dict:
    """metrics.csv, and TensorBoard's event files when it is installed (skipped silently otherwise)."""
    columns = ("validation_loss", "validation_accuracy")
    log = MetricsLog(out / METRICS_CSV, columns, lambda: {name: history[-1][name] for name in columns})
    return {"metrics_csv": log, **({"tensorboard": TensorBoardLog(out / TENSORBOARD, log)}
                                   if tensorboard_available() else {})}


class _ResumeRecord(Callback):
    """Adds this process to the resumed runs of each folder's ``run.json`` once training has restored its checkpoint
    and has epochs left to train (``continued``): a resume refused for a damaged checkpoint, or of a run that had
    trained every epoch (only tested again), leaves the records as they were."""

    def __init__(self, folders: list[Path], record: dict):
        self.folders, self.record, self.continued = folders, record, False

    def on_train_begin(self, start_epoch: int, epochs: int) -> None:
        self.continued = start_epoch < epochs
        for folder in self.folders if self.continued else ():
            write_run_record(folder, self.record, resume=True)


class _Validation(Callback):
    """After every epoch (rank 0 only): validation accuracy and loss, the best checkpoint, the history, the bar."""

    def __init__(self, model: nn.Module, batches, device: torch.device, best: BestCheckpoint, history: History):
        self.model, self.batches, self.device, self.best, self.history = model, batches, device, best, history

    def on_epoch_end(self, epoch: int, loss: float) -> None:
        if not distributed.is_main():
            return
        accuracy, validation_loss = evaluate(self.model, self.batches, self.device)
        self.best.update(self.model, accuracy, validation_loss, epoch + 1)
        self.history.append({"epoch": epoch + 1, "loss": loss, "validation_accuracy": accuracy,
                             "validation_loss": validation_loss})

    def postfix(self) -> dict:
        last = self.history[-1] if self.history else {"validation_accuracy": float("nan")}
        return {"val_acc": f"{last['validation_accuracy']:.4f}", "best": f"{self.best.accuracy:.4f}"}


def _train_method(config: ClassificationConfig, dataset: ImageDataset, splits: Splits, out: Path,
                  device: torch.device, progress: bool, resume: bool = False, top: Path | None = None) -> dict:
    """One method end to end into ``out``: train (or continue from ``out/last``), keep the best-on-validation
    checkpoint, test it. Only rank 0 writes; other ranks return an empty dict. A resume is recorded in ``out``
    and, where given, in the ``top`` folder of a ``--method all`` run, once the checkpoint is restored."""
    train = batches(splits.train, dataset, config, training=True)  # checks batch size and subset before any file
    main = distributed.is_main()
    out = prepare_out_dir(out) if main else Path(out)
    model_args = build_model_args(config.method, config.backbone, dataset.train.images.shape[1],
                                  len(dataset.classes), config.dictionary_size, config.psi)
    run_config = _run_config(config, model_args, runs.saved_config(out) if resume else None)
    split = Split(splits.train_index[train.indices], splits.validation_index, dataset.mean, dataset.std)
    if main and not resume:
        write_json(out / CONFIG, run_config)
        write_split(out, split)
        write_run_record(out, _run_record(config, dataset))
    processes = distributed.world_size()  # several: part of the run (one, as every run before they were recorded)
    fit_config = {**{key: value for key, value in run_config.items()  # threads: None in runs that did not record them
                     if key not in RELOCATABLE and (key != "threads" or value is not None)},
                  **({"processes": processes} if processes > 1 else {})}
    resuming = resume and checkpoint.exists(out / LAST)  # a method of --method all may not have started
    if resuming:  # before the network is built: an edited config.json must not allocate what it asks for
        check_configuration(checkpoint.read_meta(out / LAST), fit_config, f"{out / LAST}.json")
        runs.check_split(out, dataset, split)
    torch.manual_seed(config.seed)
    model = build_model(**model_args).to(device)
    if resuming:  # a damaged best, or another run's, is found now, not after the remaining epochs have trained
        runs.check_best(out, load_checkpoint(out / BEST, model)[1], model_args)
    if model.dictionary is not None and config.key_init == "samples" and not resume:  # else Gaussian keys
        init_keys_from_features(model, splits.train, dataset.mean, dataset.std, config.seed, device, train.indices)
    best, history = BestCheckpoint(out / BEST, model_args), History()
    validation = _Validation(model, batches(splits.validation, dataset, config), device, best, history)
    loggers = _loggers(out, history) if main else {}
    record = _ResumeRecord([out] + ([top] if top else []), _run_record(config, dataset)) if main and resume else None
    fit(model, train, epochs=config.epochs, device=device,
        optimizer=OptimizerSpec(config.learning_rate, config.weight_decay, tuple(_milestones(config)),
                                GRAD_CLIP),
        callbacks={"validation": validation, "best": best, "history": history,
                   **({"record": record} if record else {}), **loggers,  # a refused run.json: before metrics.csv
                   "progress": Progress(config.method, progress and main, validation.postfix, True, len(train),
                                        log=True)},
        last=out / LAST, resume=resume, config=fit_config)
    if not main:
        return {}
    load_checkpoint(out / BEST, model)
    metrics = {"test_accuracy": evaluate(model, batches(splits.test, dataset, config), device)[0],
               **_summary(config, best), "seconds": _training_seconds(loggers),
               "device": str(device), "processes": distributed.world_size(), "resumed": bool(record and record.continued),
               "parameters": sum(p.numel() for p in model.parameters()),
               "images": {"train": config.train_subset or len(splits.train), "validation": len(splits.validation),
                          "test": len(splits.test)},
               "history": list(history),
               "files": [f"{BEST}.json", f"{LAST}.json", CONFIG, RUN, SPLIT, METRICS_CSV, METRICS],
               "config": run_config}
    write_json(out / METRICS, metrics)
    return metrics


def _summary(config: ClassificationConfig, best: BestCheckpoint) -> dict:
    return {"validation_accuracy": best.accuracy, "validation_loss": best.loss, "best_epoch": best.epoch,
            "method": config.method, "backbone": config.backbone, "dataset": config.dataset, "epochs": config.epochs}


def _comparison_markdown(config: ClassificationConfig, results: dict[str, dict]) -> str:
    rows = [[name, f"{m['test_accuracy']:.4f}", f"{m['validation_accuracy']:.4f}", str(m["best_epoch"]),
             f"{m['seconds']:.1f}"] for name, m in results.items()]
    title = (f"# {config.dataset}, {config.backbone}: test accuracy of the best-on-validation checkpoint "
             f"({config.epochs} epochs, seed {config.seed})\n\n")
    return title + markdown_table(["method", "test accuracy", "validation accuracy", "best epoch", "seconds"], rows)


def _method_folders(out: Path) -> dict[str, Path]:
    return {name: inner_folder(out, name) for name in METHODS}


def _compare(config: ClassificationConfig, dataset: ImageDataset, splits: Splits, out: Path,
             device: torch.device, progress: bool, resume: bool = False) -> dict:
    """Every method on the same data into ``out/<method>/``, plus comparison.md and comparison.json.

    Each method gets the settings it uses (the others at their defaults), or, resumed, those its folder recorded.
    Resuming tests again the methods that had finished, continues the one that was interrupted, starts the rest;
    the first method with epochs left to train records the resume in ``out`` too."""
    results, unrecorded, folders = {}, resume, _method_folders(out)
    started = {name: resume and checkpoint.exists(folder / LAST) for name, folder in folders.items()}
    owns = {name: _member_config(config, name, folder if started[name] else None) for name, folder in folders.items()}
    for name, folder in folders.items():
        results[name] = _train_method(owns[name], dataset, splits, folder, device, progress, resume=started[name],
                                      top=out if started[name] and unrecorded else None)
        unrecorded = unrecorded and not results[name].get("resumed")  # a finished method records no resume
    if not distributed.is_main():
        return {}
    keys = ("test_accuracy", "validation_accuracy", "best_epoch", "seconds")
    comparison = {"dataset": config.dataset, "backbone": config.backbone,
                  "methods": {name: {k: m[k] for k in keys} for name, m in results.items()},
                  "config": _run_config(config)}
    write_json(out / COMPARISON_JSON, comparison)
    write_text(out / COMPARISON_MD, _comparison_markdown(config, results))
    return comparison


def _member_config(config: ClassificationConfig, name: str, folder: Path | None) -> ClassificationConfig:
    """Method ``name``'s settings in the ``--method all`` run of ``config`` (the others at their defaults), or,
    from a ``folder`` it started in, what that recorded: refused where it differs other than in where the run reads
    and runs, since a folder of another run moved in would mix its results into the comparison."""
    own = replace(config, method=name, **{unused: RUN_DEFAULTS[unused] for unused in unused_settings(name)})
    if folder is None:
        return own
    recorded = replace(runs.read_config(folder, config.data_dir, config.cache_dir), device=config.device)
    ignored = {*RELOCATABLE, *unused_settings(name)}  # settings the method never reads (older runs gave them)
    differ = [field for field, value in asdict(recorded).items() if field not in ignored and value !=
              getattr(own, field) and not (field == "threads" and None in (value, own.threads))]  # unrecorded before
    if differ:
        raise RunFolderError(f"{folder / CONFIG} records {differ[0]} {getattr(recorded, differ[0])!r}, where the "
                             f"--method all run in {folder.parent} gives {name} {getattr(own, differ[0])!r}"
                             f"{f' ({len(differ)} settings differ)' * (len(differ) > 1)}: it holds another run; "
                             "move it out of the run's folder")
    return recorded


def run_classification(dataset: str, backbone: str, method: str, out, progress: bool = True,
                       overwrite: bool = False, recorded: dict | None = None, **options) -> dict:
    """Train and test one method (``out/metrics.json``, ``config.json``, checkpoints) and return its metrics.

    ``options`` are the other fields of ``ClassificationConfig`` (epochs, batch_size, seed, device, ...), with its
    defaults. ``method="all"`` runs every method of ``METHODS`` into ``out/<method>/`` and returns the comparison
    (also written to ``out/comparison.json`` and ``out/comparison.md``). A folder that already holds a run is
    refused unless ``overwrite`` (which removes that run's files first); a rerun on other images than the run it
    ``recorded`` ran on, always (``runs.check_rerun_images``)."""
    _check_names(dataset, backbone, method)
    check_preset(options.get("preset"), dataset)
    check_settings(method, options)
    config = ClassificationConfig(dataset, backbone, method, **options)
    torch_device = resolve_device(config.device)
    _refuse_early(Path(out), overwrite, method)
    data = load_image_dataset(dataset, config.data_dir, config.cache_dir, **config.image_options)
    runs.check_rerun_images(recorded, data)
    if config.preset is not None:  # what the preset sets, unless given
        preset = paper_settings(dataset, len(data.classes), config.train_subset or training_images(data))
        config = replace(config, **{name: value for name, value in preset.items()
                                    if name not in options and name not in unused_settings(method)})
    if config.dictionary_size is None and "dictionary_size" not in unused_settings(config.method):
        config = replace(config, dictionary_size=NEIGHBOURS_PER_CLASS * len(data.classes))
    if config.threads is None:  # recorded, so that a resume or a rerun from the record sums as this run does
        config = replace(config, threads=torch.get_num_threads())
    return _execute(config, data, Path(out), torch_device, progress, resume=False, overwrite=overwrite)


def _refuse_early(out: Path, overwrite: bool, method: str) -> None:
    """What the run's claim of ``out`` would refuse (a file there, a link among its method folders, a run, a writer
    holding it), said before the images load, which may decode 60,000 JPEGs first: by rank 0 alone, which claims the
    folder later, under its lock, when another rank may have begun (torchrun)."""
    if torchrun_rank() != 0 or not out.exists():
        return
    prepare_out_dir(out)
    if method == "all":
        _method_folders(out)
    with reading(out):
        runs.claim(out, overwrite, method, remove=False)


def resume_classification(out, device: str | None = None, progress: bool = True, data_dir=None,
                          cache_dir=None) -> dict:
    """Continue the classify run in ``out`` with its saved configuration (``out/config.json``) from its ``last``
    checkpoint(s); ends with the same weights and metrics as the uninterrupted run. What is finished is read
    from the checkpoints, never from a ``metrics.json``. ``device`` may differ from the original run's; the data
    and cache folders are the caller's (or the defaults), never paths stored in the run folder."""
    out = Path(out)
    if not (out / CONFIG).is_file():
        raise checkpoint.CheckpointError(f"nothing to resume in {out}: it holds no {CONFIG} of a classify run")
    config = runs.read_config(out, data_dir, cache_dir)  # checked before anything is loaded
    config = replace(config, device=device or config.device)
    if not runs.resumable(out, config.method):
        raise checkpoint.CheckpointError(f"nothing to resume in {out}: it holds no {LAST}.json checkpoint")
    dataset = load_image_dataset(config.dataset, config.data_dir, config.cache_dir, **config.image_options)
    for stem in runs.last_stems(out, config.method):  # a method of --method all that had not started has neither
        if (stem.parent / SPLIT).is_file():
            runs.read_split_of(stem.parent, dataset)
        elif checkpoint.exists(stem):  # else the resume could train on other images without a word
            raise RunFolderError(f"{stem.parent / SPLIT} is missing beside {stem}.json: the images cannot be checked")
    return _execute(config, dataset, out, resolve_device(config.device), progress, resume=True)


def _warn_if_few_steps(config: ClassificationConfig, per_epoch: int) -> None:
    """Say where a run takes too few optimiser steps for BatchNorm's running statistics (momentum 0.1), with which
    it is validated and tested, to follow its weights: a trial's runs of 16 steps scored 0.12 in evaluation mode
    and 0.87 with each batch's own statistics, and methods compared so differ by which layers have settled."""
    steps = config.epochs * per_epoch
    if steps < SETTLED_STEPS and distributed.is_main():
        LOGGER.warning("the run takes %d optimiser steps (%d epoch(s) of %d batches): over fewer than %d, BatchNorm's "
                       "running statistics lag the weights, and validation and test accuracy may read far below what "
                       "the network learned; train longer (--epochs) or on more images to compare methods", steps,
                       config.epochs, per_epoch, SETTLED_STEPS)


def _execute(config: ClassificationConfig, dataset: ImageDataset, out: Path, device: torch.device, progress: bool,
             resume: bool, overwrite: bool = False) -> dict:
    """Run (or resume) ``config`` in this process, inside torchrun's process group when launched by it; rank 0
    holds the run folder's lock throughout."""
    with distributed.process_group(device) as device, torch_threads(config.threads):
        if resume and (out / RUN).is_file():  # another process count is said as such, not as a batch size it splits
            check_processes(read_json_object(out / RUN).get("processes"), distributed.world_size(), out / RUN)
        splits = split_validation(dataset, config.seed)
        train = batches(splits.train, dataset, config, training=True)  # checks batch size and subset before any file
        if not resume:  # a resumed run's keys are its checkpoint's
            check_key_images(config, len(train.indices))
            _warn_if_few_steps(config, len(train))
        if config.method == "all":
            _method_folders(out)  # a link among them is refused before anything is removed or written
        main = distributed.is_main()
        if main and not resume:  # once the data and the settings are checked: a refused run leaves no folder
            prepare_out_dir(out)
        with runs.lock(out) if main else nullcontext():
            if main and not resume:
                runs.claim(out, overwrite, config.method)
            if config.method != "all":
                return _train_method(config, dataset, splits, out, device, progress, resume)
            if main and not resume:
                write_json(out / CONFIG, _run_config(config))
                write_run_record(out, _run_record(config, dataset))
            return _compare(config, dataset, splits, out, device, progress, resume)
