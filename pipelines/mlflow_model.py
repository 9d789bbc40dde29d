"""The MLflow pyfunc model of a ganpipe generator, logged as models-from-code (no pickled object).

MLflow runs this file when it loads the model. It rebuilds the trained model from the ganpipe
checkpoint logged beside it (plain state dicts, ``torch.load(weights_only=True)``) through the
``ganmodels`` registry, and runs its inference network on the signature's named inputs: ``z``
(and ``c`` for class-conditional models) for the noise family. ``ganmodels`` travels with the
model (``code_paths``), so serving needs torch and numpy, not a ganpipe checkout.
"""

import mlflow
from mlflow.pyfunc import PythonModel


class GanpipeGenerator(PythonModel):
    # predict takes a dict of named arrays that MLflow already checks against the logged tensor
    # signature; MLflow's type-hint schemas (and the warning about their absence, raised when this
    # class is defined) do not apply. MLflow reads this flag in PythonModel.__init_subclass__.
    _skip_type_hint_validation = True

    def load_context(self, context):
        from ganmodels.train import load_model

        model = load_model(context.artifacts["checkpoint"])
        self.signature = model.signature()
        self.call = model.export_module()

    def predict(self, context, model_input, params=None):
        import numpy as np
        import torch

        if isinstance(model_input, dict):
            missing = [s.name for s in self.signature.inputs if s.name not in model_input]
            if missing:
                raise ValueError(f"missing input(s) {missing}; the model takes {[s.name for s in self.signature.inputs]}")
            arrays = [model_input[s.name] for s in self.signature.inputs]
        elif len(self.signature.inputs) == 1:
            arrays = [model_input]
        else:
            raise ValueError(f"pass a dict of {[s.name for s in self.signature.inputs]}")
        dtypes = {"float32": torch.float32, "int64": torch.int64}
        tensors = [torch.as_tensor(np.asarray(a), dtype=dtypes[s.dtype]) for a, s in zip(arrays, self.signature.inputs)]
        with torch.no_grad():
            return self.call(*tensors).numpy()


mlflow.models.set_model(GanpipeGenerator())
