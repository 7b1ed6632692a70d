"""Requirements, generation options and module settings read from JSON, and their WIT records."""

import unittest
from dataclasses import replace

import support  # noqa: F401  (puts the SDK and its bindings on the path)

import modelhost
from modelhost import GenerationOptions, ModelhostError, ModelRequirement
from modelhost._bindings import wit


class ModelRequirementTest(unittest.TestCase):
    def test_settings_take_the_specifications_defaults(self):
        settings = {"model_type": "embedding", "name": "org/model", "dimension": 384}
        requirement = ModelRequirement.from_settings(settings)
        self.assertEqual(requirement, ModelRequirement.embedding("org/model", 384))
        self.assertEqual((requirement.device, requirement.precision), ("auto", "exact"))
        self.assertTrue(requirement.cache_embeddings)
        self.assertEqual(requirement.preload_workers, 0)
        self.assertIsNone(requirement.max_output_length)

    def test_the_wit_record_has_every_field(self):
        requirement = ModelRequirement.text_generation(
            "org/model", device="cuda:1", temperature=0.5, precision="fast")
        record = requirement._to_wit()
        self.assertEqual(record.model_type, wit.ModelType.TEXT_GENERATION)
        self.assertEqual(record.device, wit.Device_CudaOrdinal(1))
        self.assertEqual(record.precision, wit.Precision.FAST)
        self.assertEqual((record.name, record.temperature, record.streaming),
                         ("org/model", 0.5, False))
        for device, expected in [("auto", wit.Device_Auto()), ("cpu", wit.Device_Cpu()),
                                 ("cuda", wit.Device_Cuda())]:
            self.assertEqual(replace(requirement, device=device)._to_wit().device, expected)
        alias = ModelRequirement.from_settings({"model_type": "text_generation", "name": "m"})
        self.assertEqual(alias._to_wit().model_type, wit.ModelType.TEXT_GENERATION)

    def test_bad_settings_name_the_field(self):
        cases = [
            ({"model_type": "embedding", "name": "m", "dimensions": 3},
             "unknown field `dimensions`"),
            ({"name": "m"}, "lacks `model_type`"),
            ({"model_type": "embeding", "name": "m"}, "`model_type` of the model requirement"),
            ({"model_type": "embedding", "name": "m", "device": "tpu"}, '"cuda:N", not "tpu"'),
            ({"model_type": "embedding", "name": "m", "device": "cuda:x"}, "`device`"),
            ({"model_type": "embedding", "name": "m", "dimension": "384"}, '`dimension`'),
            ({"model_type": "embedding", "name": "m", "dimension": True}, "not true"),
            ({"model_type": "embedding", "name": "m", "batch_size": -1}, "`batch_size`"),
            ({"model_type": "embedding", "name": "m", "streaming": None}, "`streaming`"),
            ({"model_type": "embedding", "name": 7}, "`name` of the model requirement"),
            (["embedding"], "must be a JSON object"),
        ]
        for settings, needle in cases:
            with self.subTest(settings=settings):
                with self.assertRaises(ModelhostError) as caught:
                    ModelRequirement.from_settings(settings)
                self.assertEqual(caught.exception.code, "invalid-requirement")
                self.assertIn(needle, caught.exception.message)

    def test_constructing_checks_types_too(self):
        with self.assertRaises(ModelhostError):
            ModelRequirement.embedding("org/model", dimension=384.0)


class GenerationOptionsTest(unittest.TestCase):
    def test_options_from_settings(self):
        options = GenerationOptions.from_settings({"temperature": 0, "seed": 42, "stop": ["\n"]})
        record = options._to_wit()
        self.assertEqual((record.temperature, record.seed, record.stop), (0, 42, ["\n"]))
        self.assertIsNone(record.max_output_length)
        self.assertEqual(GenerationOptions.from_settings({}), GenerationOptions())

    def test_bad_options_name_the_field(self):
        for settings, needle in [({"temprature": 0}, "unknown field `temprature`"),
                                 ({"stop": "\n"}, "`stop` of the generation options"),
                                 ({"seed": -1}, "`seed`")]:
            with self.subTest(settings=settings):
                with self.assertRaises(ModelhostError) as caught:
                    GenerationOptions.from_settings(settings)
                self.assertIn(needle, caught.exception.message)


class ModuleSettingsTest(unittest.TestCase):
    DEFAULTS = {"model": {"name": "m"}, "lines_per_call": 64, "system": "", "stream": True,
                "anything": None}

    def test_given_values_replace_the_defaults(self):
        config = modelhost.read_settings({"lines_per_call": 2, "anything": [1]}, self.DEFAULTS)
        self.assertEqual(config, {**self.DEFAULTS, "lines_per_call": 2, "anything": [1]})

    def test_unknown_keys_and_other_types_fail(self):
        for settings, needle in [({"lines": 2}, "unknown field `lines` in the module settings"),
                                 ({"lines_per_call": "2"}, "must be a whole number"),
                                 ({"lines_per_call": True}, "must be a whole number"),
                                 ({"stream": 1}, "must be true or false"),
                                 ({"model": "m"}, "must be a JSON object")]:
            with self.subTest(settings=settings):
                with self.assertRaises(ModelhostError) as caught:
                    modelhost.read_settings(settings, self.DEFAULTS)
                self.assertIn(needle, caught.exception.message)

    def test_parse_settings(self):
        self.assertEqual(modelhost.parse_settings(" \n"), {})
        self.assertEqual(modelhost.parse_settings('{"a": 1}'), {"a": 1})
        for text in ["{not json", "[1]"]:
            with self.assertRaises(ModelhostError) as caught:
                modelhost.parse_settings(text)
            self.assertEqual(caught.exception.code, "invalid-requirement")


if __name__ == "__main__":
    unittest.main()
