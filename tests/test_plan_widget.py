"""The memory notebook's planner widget: moving the target re-picks from the measured table and redraws."""
import pytest

from dropit.lab.notebook.planner_widget import pick_at, plan_figure, plan_model, planner_explorer

pytestmark = pytest.mark.slow  # measures and times a dozen candidates of a small ResNet (about a minute on two busy cores)


@pytest.fixture(scope="module")
def planned():
    return plan_model("resnet_mini", batch_size=4, rounds=2, gammas=(0.9,), quantize=(None, "int8"), blocks=[[]])


def test_moving_the_target_changes_the_marked_pick(planned):
    box = planner_explorer(planned, target=1.0)
    loose = box.pick
    assert loose is not None
    star = next(t for t in box.figure.data if t.name == "pick")
    assert list(star.text) == [loose]
    low = min(r.saved_ratio for r in planned.rows)
    box.slider.value = round(low + 0.01, 2)  # only the leanest candidates fit
    assert box.pick != loose and box.pick == pick_at(planned, box.slider.value)
    star = next(t for t in box.figure.data if t.name == "pick")
    assert list(star.text) == [box.pick]
    assert box.figure.layout.shapes[0].y0 == pytest.approx(box.slider.value)  # the target line moved too


def test_an_unreachable_target_marks_nothing_and_says_so(planned):
    low = min(r.saved_ratio for r in planned.rows)
    assert pick_at(planned, low * 0.5) is None
    fig = plan_figure(planned, target=low * 0.5)
    assert "no candidate fits" in fig.layout.title.text
    assert len(next(t for t in fig.data if t.name == "pick").x) == 0


def test_every_candidate_is_labelled_not_only_the_pick(planned):
    fig = plan_figure(planned, target=0.5)
    groups = [t for t in fig.data if t.name != "pick"]
    assert all("text" in t.mode for t in groups)
    labelled = sorted(n for t in groups for n in t.text)
    assert labelled == sorted(r["name"] for r in planned.rows if r["time_ratio"] is not None) and len(labelled) > 1


def test_the_most_faithful_pick_within_a_step_time_budget(planned):
    box = planner_explorer(planned, target=1.0)
    assert box.budget.disabled
    box.objective.value = "faithful"
    assert not box.budget.disabled and box.pick == "plain"  # plain's gradient is the exact one
    low = min(r.saved_ratio for r in planned.rows if r.gamma)
    box.slider.value = round(low + 0.01, 2)
    fits = [r for r in planned.rows if r.timing is not None and r.saved_bytes <= int(box.slider.value * planned.plain_bytes)]
    assert box.pick == min(fits, key=lambda r: (r.grad_bias, r.grad_error)).name
    assert "most faithful" in box.figure.layout.title.text
    box.budget.value = 1.0
    fastest = min(r.time_ratio for r in fits)
    assert (box.pick is None) == (fastest > 1.0)  # a budget no candidate meets marks nothing
