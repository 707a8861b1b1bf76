"""MLflow "models from code" definition of a streamfit model (logged by the MLflow tracker).

MLflow stores this file with the model instead of a pickle; ``load_context`` rebuilds the model
from the bundle directory logged as the ``bundle`` artifact (LightGBM text, pipeline and
contract JSON). ``predict`` takes the contract's raw columns and returns the model's outputs:
binary P(positive class), multiclass one probability per class, regression the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class StreamfitModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from streamfit.models.bundle import ModelBundle

        self.bundle = ModelBundle.load(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        frame = pd.DataFrame(model_input)
        return self.bundle.predict_matrix(self.bundle.pipeline.transform(frame))


mlflow.models.set_model(StreamfitModel())
