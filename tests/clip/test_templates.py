import pytest

from hf_clipadapt.clip import DATASET_TEMPLATES, DEFAULT_TEMPLATES, IMAGENET_TEMPLATES, get_templates


@pytest.mark.parametrize(
    "name, expected",
    [
        ("oxford_pets", "a photo of a {}, a type of pet."),
        ("oxford-pets", "a photo of a {}, a type of pet."),
        ("OxfordPets", "a photo of a {}, a type of pet."),
        ("OxfordFlowers", "a photo of a {}, a type of flower."),
        ("FGVCAircraft", "a photo of a {}, a type of aircraft."),
        ("DescribableTextures", "{} texture."),
        ("EuroSAT", "a centered satellite photo of {}."),
        ("StanfordCars", "a photo of a {}."),
        ("Food101", "a photo of {}, a type of food."),
        ("UCF101", "a photo of a person doing {}."),
        ("user/oxford-iiit-pet", "a photo of a {}, a type of pet."),
    ],
)
def test_dataset_names_are_normalised(name, expected):
    assert get_templates(name) == [expected]


def test_imagenet_uses_the_seven_template_ensemble():
    assert get_templates("ImageNet") == IMAGENET_TEMPLATES
    assert len(IMAGENET_TEMPLATES) == 7 and "itap of a {}." in IMAGENET_TEMPLATES


def test_unknown_and_none_fall_back_to_default():
    assert get_templates("my_private_dataset") == DEFAULT_TEMPLATES == ["a photo of a {}."]
    assert get_templates(None) == DEFAULT_TEMPLATES


def test_every_template_has_one_placeholder_and_result_is_a_copy():
    for templates in DATASET_TEMPLATES.values():
        assert all(t.count("{}") == 1 for t in templates)
    got = get_templates("imagenet")
    got.append("mutated {}")
    assert len(get_templates("imagenet")) == 7


@pytest.mark.parametrize("name", ["testbed", "testbed:few_shot", "testbed:open_set@2", "testbed-base_to_new"])
def test_testbed_suites_get_the_templates_the_testbed_was_pretrained_with(name):
    from hf_clipadapt.testbed import TESTBED_TEMPLATES

    assert get_templates(name) == TESTBED_TEMPLATES == DATASET_TEMPLATES["testbed"]
    assert len(TESTBED_TEMPLATES) == 4
