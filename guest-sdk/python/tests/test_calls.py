"""Host calls through fakes of the generated bindings: reference tracking, error conversion,
streams and the exports' error mapping."""

import io
import unittest
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import support  # noqa: F401  (puts the SDK and its bindings on the path)

import modelhost
from modelhost import ChatMessage, ModelhostError, ModelRequirement
from modelhost._bindings import Err, host, wit

REQUIREMENT = ModelRequirement.embedding("org/model", 3)


def host_error(code: wit.ErrorCode, message: str = "it failed") -> Err:
    """The exception a generated binding raises for the host's error result."""
    return Err(wit.Error(code, message, "the cause"))


class FakeStream:
    """A `text-stream` resource handing out `events`; `next` raises once they run out."""

    def __init__(self, *events):
        self.events = list(events)
        self.drops = 0

    def next(self):
        if not self.events:
            raise host_error(wit.ErrorCode.INFERENCE_FAILED)
        return self.events.pop(0)

    def usage(self):
        return wit.StreamUsage(5, 2)

    def __exit__(self, *exc):
        self.drops += 1


class ReferencesTest(unittest.TestCase):
    def setUp(self):
        modelhost.release_all()  # forget what another test registered

    def test_release_all_releases_each_reference_once(self):
        with mock.patch.object(host, "register_model"), \
                mock.patch.object(host, "release_model") as release:
            modelhost.register_model("a", REQUIREMENT)
            modelhost.register_model("a", REQUIREMENT)
            modelhost.register_model("b", REQUIREMENT)
            modelhost.release_model("a")
            release.reset_mock()
            release.side_effect = [host_error(wit.ErrorCode.NOT_REGISTERED), None]
            modelhost.release_all()
            self.assertEqual(sorted(c.args[0] for c in release.call_args_list), ["a", "b"])
            release.reset_mock()
            modelhost.release_all()
            release.assert_not_called()

    def test_the_requirement_goes_over_as_its_wit_record(self):
        with mock.patch.object(host, "register_model") as register:
            modelhost.register_model("a", REQUIREMENT)
        self.assertEqual(register.call_args.args, ("a", REQUIREMENT._to_wit()))
        with self.assertRaises(TypeError):
            modelhost.register_model("a", {"model_type": "embedding", "name": "m"})

    def test_a_failed_registration_holds_nothing(self):
        error = host_error(wit.ErrorCode.MODEL_NOT_FOUND, "not in the store")
        with mock.patch.object(host, "register_model", side_effect=error), \
                mock.patch.object(host, "release_model") as release:
            with self.assertRaises(ModelhostError) as caught:
                modelhost.register_model("a", REQUIREMENT)
            modelhost.release_all()
        release.assert_not_called()
        failure = caught.exception
        self.assertEqual((failure.code, failure.message, failure.details),
                         ("model-not-found", "not in the store", "the cause"))
        self.assertEqual(str(failure), "model-not-found: not in the store (the cause)")


class InferenceTest(unittest.TestCase):
    def test_embed_returns_the_one_vector(self):
        result = wit.Embeddings([[0.5, 1.0]], "e", 2, False, 1.0, None, 3)
        with mock.patch.object(host, "generate_embeddings", return_value=result) as call:
            self.assertEqual(modelhost.embed("e", "hello"), [0.5, 1.0])
        self.assertEqual(call.call_args.args, ("e", ["hello"]))
        with self.assertRaises(TypeError):
            modelhost.classify("c", "one text")

    def test_chat_sends_messages_and_options_as_records(self):
        with mock.patch.object(host, "chat") as call:
            modelhost.chat("g", [ChatMessage("user", "hi")],
                           modelhost.GenerationOptions(temperature=0))
            modelhost.chat("g", [])
        messages, options = call.call_args_list[0].args[1:]
        self.assertEqual(messages, [wit.ChatMessage("user", "hi")])
        self.assertEqual(options.temperature, 0)
        self.assertIsNone(call.call_args_list[1].args[2])


class TextStreamTest(unittest.TestCase):
    def test_pieces_then_the_finish_reason(self):
        fake = FakeStream(wit.StreamEvent_Text("Hel"), wit.StreamEvent_Text("lo"),
                          wit.StreamEvent_Finished(wit.FinishReason.LENGTH))
        with mock.patch.object(host, "stream_text", return_value=fake):
            with modelhost.stream_text("g", "say hello") as stream:
                self.assertIsNone(stream.finish_reason)
                self.assertEqual(list(stream), ["Hel", "lo"])
        self.assertEqual(stream.finish_reason, modelhost.FinishReason.LENGTH)
        self.assertEqual(stream.usage, modelhost.StreamUsage(prompt_tokens=5, tokens_generated=2))
        self.assertEqual(fake.drops, 1)
        self.assertEqual(list(stream), [])

    def test_a_failure_raises_and_drops_the_stream(self):
        fake = FakeStream(wit.StreamEvent_Text("Hel"))
        with mock.patch.object(host, "stream_chat", return_value=fake):
            stream = modelhost.stream_chat("g", [ChatMessage("user", "hi")])
            self.assertEqual(next(stream), "Hel")
            with self.assertRaises(ModelhostError) as caught:
                next(stream)
        self.assertEqual(caught.exception.code, "inference-failed")
        self.assertEqual(fake.drops, 1)
        self.assertIsNone(stream.finish_reason)
        self.assertIsNone(stream.usage)

    def test_leaving_the_block_early_drops_the_stream(self):
        fake = FakeStream(wit.StreamEvent_Text("a"), wit.StreamEvent_Text("b"))
        with mock.patch.object(host, "stream_text", return_value=fake):
            with modelhost.stream_text("g", "x") as stream:
                next(stream)
        self.assertEqual(fake.drops, 1)


class ExportsTest(unittest.TestCase):
    def test_setup_gets_parsed_settings_and_its_errors_go_to_the_host(self):
        seen = []

        class Lifecycle(modelhost.Lifecycle):
            def setup(self, settings):
                seen.append(settings)
                if settings.get("fail") == "sdk":
                    raise ModelhostError("dimension-mismatch", "768 is not 384")
                if settings.get("fail") == "bug":
                    raise KeyError("model")

        lifecycle = Lifecycle()
        lifecycle.initialize("")
        self.assertEqual(seen, [{}])
        for settings, code, message in [
            ('{"fail": "sdk"}', wit.ErrorCode.DIMENSION_MISMATCH, "768 is not 384"),
            ('{"fail": "bug"}', wit.ErrorCode.INTERNAL, "KeyError: 'model'"),
            ("{oops", wit.ErrorCode.INVALID_REQUIREMENT, "not valid JSON"),
        ]:
            with self.subTest(settings=settings), redirect_stderr(io.StringIO()):
                with self.assertRaises(Err) as caught:
                    lifecycle.initialize(settings)
                self.assertEqual(caught.exception.value.code, code)
                self.assertIn(message, caught.exception.value.message)

    def test_cleanup_releases_everything(self):
        with mock.patch.object(modelhost.lifecycle, "release_all") as release_all:
            modelhost.Lifecycle().cleanup()
        release_all.assert_called_once_with()

    def test_run_turns_failures_into_a_failed_exit_with_a_message(self):
        class Run(modelhost.Run):
            name = "tool"

            def __init__(self, failure):
                self.failure = failure

            def main(self):
                if self.failure is not None:
                    raise self.failure

        for failure in [None, SystemExit(0), SystemExit()]:
            Run(failure).run()
        for failure, message in [
            (ModelhostError("not-registered", "register it first"),
             "tool: not-registered: register it first"),
            (SystemExit("not initialized"), "tool: not initialized"),
            (SystemExit(3), "tool: exit status 3"),
            (ValueError("bad line"), "tool: ValueError: bad line"),
        ]:
            with self.subTest(failure=failure), redirect_stderr(io.StringIO()) as stderr:
                with self.assertRaises(Err) as caught:
                    Run(failure).run()
                self.assertIsNone(caught.exception.value)
                self.assertIn(message + "\n", stderr.getvalue())


class CommandTest(unittest.TestCase):
    class Echo(modelhost.Command):
        name = "echo"
        cleaned = 0

        def __init__(self, settings):
            if "fail" in settings:
                raise ModelhostError("model-not-found", "no such model")
            self.prefix = settings.get("prefix", "")

        def run(self):
            print(self.prefix + "ran")

        def cleanup(self):
            type(self).cleaned += 1
            super().cleanup()

    def test_run_and_cleanup_use_the_object_initialize_made(self):
        Lifecycle, Run = modelhost.export_command(self.Echo)
        Lifecycle().initialize('{"prefix": "> "}')
        Lifecycle().initialize('{"prefix": "second "}')
        with redirect_stdout(io.StringIO()) as stdout:
            Run().run()
        self.assertEqual(stdout.getvalue(), "> ran\n")
        with mock.patch.object(modelhost.command, "release_all") as release_all:
            Lifecycle().cleanup()
        release_all.assert_called_once_with()
        self.assertEqual(self.Echo.cleaned, 1)

    def test_a_failed_start_reaches_the_host_and_run_refuses(self):
        Lifecycle, Run = modelhost.export_command(self.Echo)
        self.assertEqual(Run.name, "echo")
        with self.assertRaises(Err) as caught:
            Lifecycle().initialize('{"fail": true}')
        self.assertEqual(caught.exception.value.code, wit.ErrorCode.MODEL_NOT_FOUND)
        with redirect_stderr(io.StringIO()) as stderr, self.assertRaises(Err):
            Run().run()
        self.assertIn("echo: not initialized; start it with `modelhost run`", stderr.getvalue())


if __name__ == "__main__":
    unittest.main()
