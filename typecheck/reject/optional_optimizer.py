"""`Model.optimizer` may be None (a model whose train_step needs none), so a custom
`train_step` that calls it directly is flagged; `self.get_optimizer()` is the typed way
(see accept/model_optimizer.py)."""

import eqx_elegy as elegy


class Unchecked(elegy.Model):
    def train_step(self, states: elegy.States, initializing: bool) -> elegy.TrainStep:
        if initializing:
            opt_states = self.optimizer.init(states.net_params)  # type: ignore[union-attr]  # pyright: ignore[reportOptionalMemberAccess]
            return {}, states.update(optimizer_states=opt_states)
        return {}, states
