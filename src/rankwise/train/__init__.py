"""The one training loop behind every rankwise command, usable from Python too.

    from rankwise.train import LMTask, TrainConfig, prepare_method, train
    prepared = prepare_method(model, "lora", {"rank": 16}, lr=1e-3, total_steps=300)
    result = train(model, LMTask(tokens.train, tokens.val, 16, 128), prepared, TrainConfig(steps=300), "runs/x")
"""

from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .loop import TrainingDiverged, TrainingInterrupted, TrainResult, train
from .lr import warmup_decay
from .method import Prepared, family_of, method_kwargs, optimizer_state_bytes, prepare_method
from .tasks import ClassificationTask, LMTask, Task

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "TrainingInterrupted", "train", "warmup_decay",
           "Prepared", "prepare_method", "family_of", "method_kwargs", "optimizer_state_bytes", "Task", "LMTask",
           "ClassificationTask", "save_checkpoint", "load_checkpoint", "find_checkpoint"]
